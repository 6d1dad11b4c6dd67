import importlib

# Public names imported on first use, so that `import sdnseg` does not import timm.
_LAZY = {"create_model": "sdnseg.models"}
_LAZY["export_onnx"] = "sdnseg.export"
_LAZY["verify_onnx"] = "sdnseg.export"
_LAZY["load_model"] = "sdnseg.inference"


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sdnseg' has no attribute {name!r}")
