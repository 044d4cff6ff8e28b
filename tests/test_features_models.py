"""Feature plumbing: config -> builder -> encoded tensors -> models; shapes and fast paths."""
from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import open_dict

from data_modules.features import encode_features
from recmodels.bert4rec import BERT4Rec
from recmodels.feature_ncf import FeatureNeuMF
from recmodels.sasrec import SASRec
from train.building import build_with_data, feature_tensors
from tests.helpers import tiny_config

B = 3


def tensors(data, **kwargs):
    """Item and user features of ``data`` as the models receive them."""
    items, users, _ = encode_features(data, **kwargs)
    return feature_tensors(items), feature_tensors(users)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("run"), "model=neumf_features")
    return cfg, hydra.utils.instantiate(cfg.data)


def build(tmp_path: Path, data, model: str, *overrides: str):
    cfg = tiny_config(tmp_path, f"model={model}", *overrides)
    return build_with_data(cfg.model.net, data)


def context(data) -> dict[str, torch.Tensor]:
    history = torch.randint(0, data.num_items, (B, 6))
    history[0, :2] = -1
    return {"user": torch.tensor([0, 5, data.num_users - 1]), "history": history}


def test_neumf_features_gets_item_and_user_tensors(setup, tmp_path) -> None:
    _, data = setup
    model = build(tmp_path, data, "neumf_features", "model.net.mf_dim=8", "model.net.mlp_embed_dim=32")
    assert isinstance(model, FeatureNeuMF)
    assert model.gmf_items.feature_names == ["genres"] and model.gmf_items.numeric_dim == 1  # year
    assert model.mlp_users.feature_names == ["age", "gender"]
    assert model.gmf_items.table().shape == (data.num_items, 8)
    assert model.mlp_users.table().shape == (data.num_users, 32)
    assert model.score_all(context(data)).shape == (B, data.num_items)


def test_feature_neumf_fast_paths_match_pairwise_forward(setup) -> None:
    _, data = setup
    items, users = tensors(data)
    for fusion in ("sum", "concat"):
        model = FeatureNeuMF(data.num_users, data.num_items, items, users, layers=(16, 8), fusion=fusion).eval()
        with torch.no_grad():
            for p in model.parameters():  # N(0, 0.01) makes every score ~equal; spread them
                p.normal_(0, 0.3)
            ctx = context(data)
            everything = torch.arange(data.num_items).expand(B, -1)
            pairwise = model(ctx["user"][:, None].expand_as(everything), everything)
            torch.testing.assert_close(model.score_all(ctx), pairwise)
            cands = torch.randint(0, data.num_items, (B, 7))
            torch.testing.assert_close(model.score_candidates(ctx, cands), pairwise.gather(1, cands))
            assert model.user_representation(ctx).shape == (B, 8 + 32)


def test_user_features_change_the_user_vector(setup) -> None:
    _, data = setup
    items, users = tensors(data)
    model = FeatureNeuMF(data.num_users, data.num_items, items, users, fusion="sum")
    enc = model.gmf_users
    with torch.no_grad():
        u = 7
        expected = enc.id_emb.weight[u].clone()
        for name in ("age", "gender"):
            expected += enc.embeddings[name].weight[users.categorical[name][u]]
        torch.testing.assert_close(enc(torch.tensor([u]))[0], expected)


@pytest.mark.parametrize("name,cls", [("sasrec_features", SASRec), ("bert4rec_features", BERT4Rec)])
def test_sequence_models_read_item_features_from_config(setup, tmp_path, name, cls) -> None:
    _, data = setup
    model = build(tmp_path, data, name, "model.net.hidden=16", "model.net.fusion=concat")
    assert isinstance(model, cls) and model.item_emb is None
    assert model.item_encoder.feature_names == ["genres"] and model.item_encoder.numeric_dim == 1
    assert model.item_encoder.fusion == "concat"
    ctx = context(data)
    scores = model.eval().score_all(ctx)
    assert scores.shape == (B, data.num_items)
    cands = torch.randint(0, data.num_items, (B, 5))
    torch.testing.assert_close(model.score_candidates(ctx, cands), scores.gather(1, cands))


def test_use_features_subsets_and_none(setup, tmp_path) -> None:
    _, data = setup
    only_genres = build(tmp_path, data, "sasrec_features", "model.net.use_features=[genres]")
    assert only_genres.item_encoder.feature_names == ["genres"] and only_genres.item_encoder.numeric_dim == 0
    plain = build(tmp_path, data, "sasrec_features", "model.net.use_features=none")
    assert plain.item_encoder is None and plain.item_emb is not None
    assert build(tmp_path, data, "sasrec").item_encoder is None  # no use_features key: ids only


def test_builder_errors_name_the_fix(setup, tmp_path) -> None:
    _, data = setup
    with pytest.raises(ValueError, match="gender"):  # SASRec takes no user features
        build(tmp_path, data, "sasrec_features", "model.net.use_features=[genres,gender]")
    cfg = tiny_config(tmp_path, "model=neumf")
    with open_dict(cfg):
        cfg.model.net.use_features = "all"
    with pytest.raises(ValueError, match="neumf_features"):
        build_with_data(cfg.model.net, data)


def test_sasrec_with_genres_adds_exactly_the_genre_table(setup) -> None:
    _, data = setup
    items, _ = tensors(data, use=["genres"], users=False)
    with_features = SASRec(data.num_items, hidden=8, item_features=items)
    plain = SASRec(data.num_items, hidden=8)
    extra = sum(p.numel() for p in with_features.parameters()) - sum(p.numel() for p in plain.parameters())
    # id table loses its padding row (8); the genre bag adds (genres + padding) x 8.
    assert extra == (items.cardinalities["genres"] + 1) * 8 - 8


def test_trained_run_reloads_with_the_same_features(tmp_path) -> None:
    from train.serving.loading import load_recommender
    from train.training.run import train

    cfg = tiny_config(tmp_path, "model=neumf_features", "trainer.max_epochs=1", "model.datamodule.batch_size=128")
    train(cfg)
    model, ctx = load_recommender(tmp_path)  # rebuilt from the run's saved config and data
    assert isinstance(model, FeatureNeuMF) and model.gmf_items.feature_names == ["genres"]
    fresh = build_with_data(cfg.model.net, hydra.utils.instantiate(cfg.data))
    saved, rebuilt = model.state_dict(), fresh.state_dict()
    names = [k for k in saved if ".values_" in k or k.endswith("numeric_values")]
    assert len(names) == 8  # (genres, year) x 2 item encoders + (age, gender) x 2 user encoders
    for name in names:
        torch.testing.assert_close(saved[name], rebuilt[name])  # same codes and statistics
    assert model.score_all(ctx.user_context([0, 1, 2])).shape == (3, ctx.data.num_items)


def test_models_get_tensors_of_exactly_the_encoded_arrays(setup) -> None:
    """The data layer encodes to numpy; the builder's tensors hold the same values."""
    _, data = setup
    arrays, _, _ = encode_features(data, users=False)
    items = feature_tensors(arrays)
    assert feature_tensors(None) is None
    assert items.num_rows == arrays.num_rows and items.numeric_dim == arrays.numeric_dim
    assert items.cardinalities == arrays.cardinalities and items.multi_valued == arrays.multi_valued
    for name, codes in arrays.categorical.items():
        assert items.categorical[name].dtype == torch.long
        assert items.categorical[name].tolist() == codes.tolist()
    assert items.numeric.dtype == torch.float32 and items.numeric.numpy().tobytes() == arrays.numeric.tobytes()
