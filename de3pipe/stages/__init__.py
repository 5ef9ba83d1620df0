"""The seven pipeline stages, one module each: typed inputs in, exactly the declared outputs written."""
