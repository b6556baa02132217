"""Teacher models on a tiny synthetic RecBole dataset: one training epoch, and full-sort scores
that equal per-pair scores on every (user, item) pair."""

import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

import recbole_hetcomp.compat  # noqa: F401  (before RecBole: numpy 2 / scipy mends)
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_hetcomp.model import CML, ItemVAE, NeuMF
from conftest import TEST_USE_GPU

PROPERTIES = Path(__file__).resolve().parents[1] / "properties" / "model"
N_USERS, N_ITEMS, PER_USER = 30, 40, 8


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "tiny").mkdir()
    rng = np.random.default_rng(0)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(N_USERS):
        for k, i in enumerate(rng.choice(N_ITEMS, size=PER_USER, replace=False)):
            lines.append(f"u{u}\ti{i}\t{1 + k % 5}\t{1000 * u + k}")
    (root / "tiny" / "tiny.inter").write_text("\n".join(lines) + "\n")
    return root


def build(model_class, data_path, **overrides):
    """Config, loaders and a fresh model, with RecBole's sys.argv parsing kept away from pytest."""
    yaml_file = PROPERTIES / f"{model_class.__name__}.yaml"
    config_dict = {
        "data_path": str(data_path),
        "epochs": 1,
        "use_gpu": TEST_USE_GPU,  # RecBole's own Config: it may pick CUDA either way
        "checkpoint_dir": str(data_path / "saved"),
        "show_progress": False,
        "state": "ERROR",
        "train_batch_size": 64,
        "eval_batch_size": 4096,
        "metrics": ["Recall", "NDCG"],
        "topk": [5],
        "valid_metric": "Recall@5",
    }
    config_dict.update(overrides)
    with mock.patch.object(sys, "argv", ["x"]):
        config = Config(
            model=model_class,
            dataset="tiny",
            config_file_list=[str(yaml_file)] if yaml_file.exists() else [],
            config_dict=config_dict,
        )
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = model_class(config, train_data.dataset).to(config["device"])
    return config, model, train_data


def train_one_epoch(config, model, train_data):
    trainer = Trainer(config, model)
    loss = trainer._train_epoch(train_data, epoch_idx=0)
    losses = loss if isinstance(loss, tuple) else (loss,)
    assert all(np.isfinite(x) for x in losses)
    return trainer


def all_pairs_agree(model):
    """full_sort_predict for every user equals predict on the explicit (user, item) pairs."""
    model.eval()
    users = torch.arange(model.n_users, device=model.device)
    items = torch.arange(model.n_items, device=model.device)
    with torch.no_grad():
        full = model.full_sort_predict(Interaction({model.USER_ID: users}))
        pairs = Interaction(
            {
                model.USER_ID: users.repeat_interleave(model.n_items),
                model.ITEM_ID: items.repeat(model.n_users),
            }
        )
        pointwise = model.predict(pairs)
    assert full.shape == (model.n_users * model.n_items,)
    torch.testing.assert_close(full, pointwise, rtol=1e-5, atol=1e-5)
    return full


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    # RecBole's Trainer writes ./log_tensorboard relative to the working directory.
    monkeypatch.chdir(tmp_path)


SMALL = {
    CML: {"embedding_size": 8},
    ItemVAE: {"mlp_hidden_size": [16], "latent_dimension": 4},
    NeuMF: {"mf_embedding_size": 8, "mlp_embedding_size": 8, "mlp_hidden_size": [16, 8]},
}


@pytest.mark.parametrize("model_class", [CML, ItemVAE, NeuMF], ids=lambda c: c.__name__)
def test_train_epoch_and_full_sort_matches_predict(model_class, data_path):
    config, model, train_data = build(model_class, data_path, **SMALL[model_class])
    train_one_epoch(config, model, train_data)
    all_pairs_agree(model)


def test_chunked_scoring_matches_predict(data_path):
    # Blocks far smaller than the data, so every chunk loop runs many times with ragged ends.
    config, model, train_data = build(NeuMF, data_path, **SMALL[NeuMF])
    train_one_epoch(config, model, train_data)
    hidden = config["mlp_hidden_size"][0]
    model.cpu_chunk_elements = 7 * hidden  # 7 items x 1 user per block
    all_pairs_agree(model)

    config, model, train_data = build(ItemVAE, data_path, **SMALL[ItemVAE])
    train_one_epoch(config, model, train_data)
    model.max_chunk_elements = 3 * model.n_users  # 3 items per block
    all_pairs_agree(model)


@pytest.mark.parametrize(
    "mf_train, mlp_train", [(True, False), (False, True)], ids=["mf_only", "mlp_only"]
)
def test_neumf_full_sort_follows_tower_flags(mf_train, mlp_train, data_path):
    config, model, train_data = build(
        NeuMF, data_path, mf_train=mf_train, mlp_train=mlp_train, **SMALL[NeuMF]
    )
    train_one_epoch(config, model, train_data)
    all_pairs_agree(model)


def test_neumf_training_mode_with_input_dropout_scores_each_pair(data_path):
    # Active dropout on concat(p_u, q_i) cannot be split: the per-pair path must be used, and
    # with the dropout's randomness fixed it equals predict.
    config, model, _ = build(NeuMF, data_path, dropout_prob=0.5, **SMALL[NeuMF])
    model.train()
    users = torch.arange(model.n_users, device=model.device)
    torch.manual_seed(1)
    full = model.full_sort_predict(Interaction({model.USER_ID: users}))
    torch.manual_seed(1)
    pairs = Interaction(
        {
            model.USER_ID: users.repeat_interleave(model.n_items),
            model.ITEM_ID: torch.arange(model.n_items, device=model.device).repeat(model.n_users),
        }
    )
    torch.testing.assert_close(full, model.predict(pairs))


def test_cml_embeddings_stay_in_ball(data_path):
    config, model, train_data = build(CML, data_path, **SMALL[CML])
    clip = config["clip_norm"]
    train_one_epoch(config, model, train_data)
    model.eval()
    with torch.no_grad():
        model.full_sort_predict(Interaction({model.USER_ID: torch.arange(model.n_users, device=model.device)}))
    for table in (model.user_embedding.weight, model.item_embedding.weight):
        assert table.norm(dim=1).max().item() <= clip + 1e-5

    # A step that throws embeddings out of the ball is undone before the next loss is computed.
    with torch.no_grad():
        model.user_embedding.weight.mul_(5.0)
        model.item_embedding.weight.mul_(5.0)
    model.train()
    batch = next(iter(train_data)).to(model.device)
    assert torch.isfinite(model.calculate_loss(batch))
    for table in (model.user_embedding.weight, model.item_embedding.weight):
        assert table.norm(dim=1).max().item() <= clip + 1e-5


def test_cml_covariance_regulariser_adds_to_loss(data_path):
    config, model, train_data = build(CML, data_path, cov_reg_weight=1.0, **SMALL[CML])
    batch = next(iter(train_data)).to(model.device)
    with_reg = model.calculate_loss(batch)
    model.cov_reg_weight = 0.0
    assert with_reg.item() > model.calculate_loss(batch).item()


@pytest.mark.parametrize("likelihood", ["multinomial", "bernoulli"])
def test_itemvae_score_cache_follows_parameters(likelihood, data_path):
    config, model, train_data = build(
        ItemVAE, data_path, likelihood=likelihood, **SMALL[ItemVAE]
    )
    before = all_pairs_agree(model)

    # A training epoch (train() drops the cache) changes the scores, and the new scores are
    # again the per-pair ones.
    train_one_epoch(config, model, train_data)
    after = all_pairs_agree(model)
    assert not torch.allclose(before, after)

    # Parameters changed in place while in eval mode (an optimiser step, load_state_dict)
    # also refresh the cache.
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.decoder[-1].bias.add_(torch.randn_like(model.decoder[-1].bias))
    shifted = all_pairs_agree(model)
    assert not torch.allclose(after, shifted)
    model.load_state_dict(state)
    torch.testing.assert_close(all_pairs_agree(model), after)


def test_itemvae_reads_item_rows_of_training_matrix(data_path):
    config, model, train_data = build(ItemVAE, data_path, **SMALL[ItemVAE])
    expected = torch.from_numpy(
        train_data.dataset.inter_matrix(form="csr").transpose().toarray() > 0
    ).float()
    items = torch.tensor([0, 5, 3, 5, model.n_items - 1])
    rows = model._item_rows(items.to(model.device))
    torch.testing.assert_close(rows.cpu(), expected[items])
