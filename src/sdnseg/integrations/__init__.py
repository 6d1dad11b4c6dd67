"""SDN for models built with other libraries; each integration imports its library on use.

:mod:`sdnseg.integrations.smp`: an SDN neck between the encoder and the decoder of a
segmentation_models.pytorch model (``pip install 'sdnseg[smp]'``).
"""
