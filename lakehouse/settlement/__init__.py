"""CER monthly settlement (DM 414/2023, ARERA TIAD): shared energy per primary substation and market
zone, incentive (TIP), ARERA valorisation, repartition to members, verifiable statements.

Modules: ``rules`` (tariffs, statute rule, exact rounding), ``model`` (inputs, local months),
``compute`` (plain-Python reference), ``prices`` (GME MGP / CSV -> Delta). docs/settlement.md.
"""
