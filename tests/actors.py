"""The actor that test set-up writes as (service calls made outside any request)."""

from core.principals import Actor

TEST_ACTOR = Actor(label="command:tests", request_id="tests")
