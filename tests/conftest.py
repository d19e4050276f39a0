import pytest

from helpers import tiny_fold0_tree


@pytest.fixture
def tiny_voc(tmp_path):
    """A hand-checkable VOC tree; returns the folder that holds VOCdevkit/."""
    tiny_fold0_tree(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """The default synthetic5i tree (seed 0), written once per test session."""
    from fsseg_bench.data.synthetic import SyntheticConfig, write_synthetic_tree

    root = tmp_path_factory.mktemp("synthetic5i")
    write_synthetic_tree(root, SyntheticConfig())
    return root
