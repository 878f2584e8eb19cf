"""Data: image decoding, data sets (folders, RecordIO, synthetic), samplers, the DataModule."""
