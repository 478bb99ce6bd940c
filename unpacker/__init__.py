"""Registry images into flat CVMFS trees laid out like /cvmfs/unpacked.cern.ch."""
