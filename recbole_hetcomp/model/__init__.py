"""Recommenders this plugin adds to RecBole: the teachers RecBole lacks or scores too slowly."""

from recbole_hetcomp.model.cml import CML
from recbole_hetcomp.model.hetcomp_student import HetCompStudent
from recbole_hetcomp.model.itemvae import ItemVAE
from recbole_hetcomp.model.neumf import NeuMF

__all__ = ["CML", "HetCompStudent", "ItemVAE", "NeuMF"]
