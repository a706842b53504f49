import pytest

from r1rl.models.tokenizer import train_tokenizer
from r1rl.tasks.arithmetic import ArithmeticSource


@pytest.fixture(scope="session")
def arith_docs():
    return list(ArithmeticSource(400, min_operands=2, max_operands=5, digits=2, seed=0))


@pytest.fixture(scope="session")
def tokenizer(arith_docs):
    return train_tokenizer([d.text for d in arith_docs], vocab_size=320)
