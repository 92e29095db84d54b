"""The networks: classifiers that are explained, the generator architecture, the hardware they run on."""
