"""Output builders (SFT, pairs), dataset cards and writing."""
