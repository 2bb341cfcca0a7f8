import pytest
import torch

from transmrsr import TransMRSR, TransMRSRConfig


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_model() -> TransMRSR:
    """A tiny TransMRSR with fitted centroids, in eval mode."""
    torch.manual_seed(1)
    cfg = TransMRSRConfig.from_preset("tiny")
    model = TransMRSR(cfg).eval()
    model.truncation.set_centroids(torch.randn(cfg.num_centroids, cfg.style_dim))
    return model


@pytest.fixture(scope="module")
def one_torch_thread():
    """On a busy 2-core machine torch's default two intra-op threads are far slower than one;
    modules that run many small forwards use this and get the old setting back afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
