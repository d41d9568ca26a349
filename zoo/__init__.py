"""The timm-ccrop zoo: training recipes (``recipes/*.yaml``) and the released-model index.

Installed as ``timm_ccrop.zoo`` so recipes ship with the package.
"""
