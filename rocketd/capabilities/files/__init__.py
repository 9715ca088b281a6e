"""Files: uploads, downloads, `file` fields."""
