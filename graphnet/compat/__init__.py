"""Compatibility layers that let code written for other frameworks run on graphnet.

``graphnet.compat.theano`` stands in for ``theano`` under
``python -m graphnet theano SCRIPT.py`` (see ``graphnet.compat.theano_command``);
it is never installed as a top-level ``theano`` module.
"""
