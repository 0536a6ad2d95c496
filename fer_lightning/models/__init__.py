"""Models: the FER LightningModule and timm backbones."""
