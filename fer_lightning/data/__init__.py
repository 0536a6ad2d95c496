"""Data: source readers, synthetic faces, split protocol, transforms, DataModule."""
