"""Training records: schema, readers, validation, augmentation and sampling."""
