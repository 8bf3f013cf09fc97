"""Data files shipped with the pipeline (face_attributes.txt); a package so that wheels include them."""
