"""Built-in flavors, installed as ``modelpack.flavors`` (one module per model library)."""
