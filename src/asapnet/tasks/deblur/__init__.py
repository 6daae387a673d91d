"""Motion deblurring with DeblurGAN, ASAP-Net and the MSG U-Net."""
