"""Standard PyNN cell types, synapse types and current sources on the virtual chip.

Each supported class keeps PyNN's parameter names and units as its native parameters;
the translation to hardware (calibration targets, CapMem values, weight steps) happens
in :mod:`pynn_brainscales2.translation` through :mod:`pynn_brainscales2.hardware`.
Classes for models the chip cannot express exist under their PyNN names and raise
:class:`~pynn_brainscales2.errors.ChipFeatureError` when instantiated.
"""
