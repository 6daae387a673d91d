"""Import checkpoints of the reference implementations (ASAP-Net, SPADE, pix2pixHD) as asapnet
generators (``asapnet convert``)."""
