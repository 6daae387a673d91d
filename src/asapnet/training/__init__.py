"""The GAN training loop (:class:`.trainer.Trainer`, :func:`.trainer.train`) and its run folder."""
