"""Flax (linen) modules: encoders, factorisation, multi-task networks, heads.

Submodules: :mod:`~mtrlrec.models.encoders`, :mod:`~mtrlrec.models.factorization`,
:mod:`~mtrlrec.models.multitask`, :mod:`~mtrlrec.models.heads`,
:mod:`~mtrlrec.models.synthetic` (MMoE data). The runners that train them
(MMoE synthetic study, next-item recommendation) are in :mod:`mtrlrec.runners`.
"""
