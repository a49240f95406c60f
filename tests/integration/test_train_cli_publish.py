"""``recsys train-als --publish`` against a real broker."""
import json

import pytest

from offline_als.train_cli import main
from tests.helpers import last_json as _last_json


@pytest.mark.broker
def test_publish_to_the_embedded_broker(shop, stream_env, capsys):
    from app.records import MODEL_MARKER_KEY
    from tests.brokers import consume, run

    conf = stream_env.conf
    code = main(["--input", shop["ratings"], "--format", "csv", "--rank", "4", "--iters", "2", "--similar", "5",
                 "--publish", "--out", "", "--no-progress"])
    assert code == 0
    res = _last_json(capsys)
    assert res["published"] == res["items"] + conf.kafka.partitions and res["topic"] == conf.topics.similarity
    msgs = run(consume(conf, conf.topics.similarity, until=lambda m: len(m) >= res["published"], timeout=30))
    marker = [json.loads(m.value) for m in msgs if m.key == MODEL_MARKER_KEY.encode()]
    # one marker per partition, after the items
    assert marker == [{**marker[0], "version": res["version"], "items": res["items"]}] * conf.kafka.partitions
