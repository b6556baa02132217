"""Recommenders this plugin adds to RecBole: the teachers RecBole lacks or scores too slowly."""

from recbole_hetcomp.model.cml import CML
from recbole_hetcomp.model.hetcomp_student import HetCompStudent
from recbole_hetcomp.model.itemvae import ItemVAE
from recbole_hetcomp.model.kd_students import DCD, RRD
from recbole_hetcomp.model.neumf import NeuMF

__all__ = ["CML", "DCD", "HetCompStudent", "ItemVAE", "NeuMF", "RRD"]
