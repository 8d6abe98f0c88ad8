"""PyTorch reference of the vdit model format (docs/model-format.md).

Everything here follows the format document literally, in float32, so that the C engine
can be checked against it; the same modules are the starting point of the training code.
"""
