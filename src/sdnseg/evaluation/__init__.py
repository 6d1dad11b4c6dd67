"""Model-agnostic evaluation: score folders of label PNGs from any model (``sdnseg evaluate``),
with every metric of :mod:`sdnseg.metrics` and a self-contained HTML report."""
