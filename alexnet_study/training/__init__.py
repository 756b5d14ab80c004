"""Training: ``run(cfg)``, the LightningModule every study trains, its losses and callbacks."""
