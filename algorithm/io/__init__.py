"""Reading CT images (files, DICOM series), checking them, and writing masks and reports atomically."""
