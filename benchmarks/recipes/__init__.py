"""DER recipes for licensed corpora: AMI, CALLHOME, NIST SRE 2000 (`_recipe` holds what they share)."""
