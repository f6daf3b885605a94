"""Calling a compiled Numba function through its address, from compiled code.

A Numba function that calls another compiles the callee's code into its own: LLVM links the
callee's module in and optimizes it again. For a compiled loop (``compiled_loop.py``: every
kernel of a body, inlined) called from a ``prange`` (``split_loop.py``'s halves), that is the
whole loop compiled twice more, once into the ``prange``'s outlined body: W7's halves took
4.8 s to compile on top of the 1.5 s of the loop itself (1.25 s when called without a
``prange``). Through its address, the caller compiles to one indirect call (0.2 s).

The address is only as safe as its signature: :func:`call_at` passes its arguments as the
types they have where it is compiled, so the caller must be compiled for exactly the types
the address was taken for (``split_loop.HalvesLoop`` locks its dispatcher to that one
signature).
"""
from __future__ import annotations

from numba.core import types
from numba.extending import intrinsic


@intrinsic
def call_at(typingctx, address, args):
    """``f(*args)`` for the nopython function ``f`` compiled for ``args``' types whose address
    is ``address`` (an integer, from :func:`address_of`); ``f`` returns None. An exception
    ``f`` raises propagates to the caller."""
    if not isinstance(address, types.Integer) or not isinstance(args, types.BaseTuple):
        return None
    argtys = tuple(args)

    def codegen(context, builder, signature, llargs):
        fnty = context.call_conv.get_function_type(types.none, argtys)
        fn = builder.inttoptr(llargs[0], fnty.as_pointer())
        values = [builder.extract_value(llargs[1], i) for i in range(len(argtys))]
        status, _ = context.call_conv.call_function(builder, fn, types.none, argtys, values)
        with builder.if_then(status.is_error, likely=False):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()
    return types.none(address, args), codegen


def address_of(dispatcher, signature):
    """The address of ``dispatcher``'s compiled code for ``signature`` (compiled or loaded in
    this process), for :func:`call_at`."""
    compiled = dispatcher.overloads[signature]
    if compiled.signature.return_type != types.none:
        raise TypeError(f"call_at calls functions that return None; {dispatcher.py_func.__name__} "
                        f"returns {compiled.signature.return_type}")
    return compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
