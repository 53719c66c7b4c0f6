"""The pairwise labeling interface and its result format, shared by push, pull and the simulator.

Left is `image_0`, right is `image_1`. One `Choices` control (left / right / tie, keys 1 / 2 / 3) holds
the judgement: Label Studio's `Pairwise` tag cannot express a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class ImageScorer(Protocol):
    """Scores encoded images (PNG/JPEG bytes) with their prompts, one float each: what pre-labels and simulated
    annotators call. `canvas.rlhf.rewards.EncodedImageScorer(name)` is one; labeling never imports rewards."""

    name: str

    def __call__(self, images: Sequence[bytes], prompts: Sequence[str]) -> list[float]: ...


FROM_NAME = "preference"
TO_NAME = "prompt"
CHOICES = ("left", "right", "tie")
HOTKEYS = {"left": "1", "right": "2", "tie": "3"}
# A gold pair's known answer lives in its task's `meta` under this key (set at import): never an annotation,
# so it does not count toward the task's overlap and Label Studio still serves the task to annotators.
GOLD_META_KEY = "canvas_gold"
# Pick-a-Pic labels (label_0, label_1) per choice.
LABELS = {"left": (1.0, 0.0), "right": (0.0, 1.0), "tie": (0.5, 0.5)}

LABEL_CONFIG = f"""<View>
  <Header value="Which image fits the prompt better?"/>
  <Text name="{TO_NAME}" value="$prompt"/>
  <View style="display: grid; grid-template-columns: 1fr 1fr; gap: 16px">
    <View>
      <Header value="Left (key 1)" size="5"/>
      <Image name="left" value="$image_0" width="100%" maxWidth="512px" smoothing="false" zoom="false"/>
    </View>
    <View>
      <Header value="Right (key 2)" size="5"/>
      <Image name="right" value="$image_1" width="100%" maxWidth="512px" smoothing="false" zoom="false"/>
    </View>
  </View>
  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single-radio" required="true" showInline="true">
{chr(10).join(f'    <Choice value="{c}" hotkey="{HOTKEYS[c]}"/>' for c in CHOICES)}
  </Choices>
</View>
"""


def pairs_config_problem(label_config: str) -> str | None:
    """Why a project's labeling config cannot hold canvas pairs (pull could not read its answers, push's
    tasks would not show), or None when it can. Structure, not text: a config differing only in headers,
    styles or hotkeys (an older canvas template) is fine."""
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError as exc:
        return f"its labeling config is not XML ({exc})"
    tags = list(root.iter())
    choices = [t for t in tags if t.tag == "Choices" and t.get("name") == FROM_NAME]
    if not choices or choices[0].get("toName") != TO_NAME:
        return f'its labeling config has no <Choices name="{FROM_NAME}" toName="{TO_NAME}">'
    values = {c.get("value") for c in choices[0].iter("Choice")}
    if not set(CHOICES) <= values:
        return f"its {FROM_NAME} choices are {sorted(v for v in values if v)}, not {', '.join(CHOICES)}"
    shown = {t.get("value") for t in tags if t.tag in ("Image", "Text")}
    missing = [v for v in ("$prompt", "$image_0", "$image_1") if v not in shown]
    if missing:
        return f"its labeling config does not show {', '.join(missing)}"
    return None


def choice_result(choice: str) -> list[dict[str, Any]]:
    """The annotation `result` Label Studio stores when an annotator picks `choice`."""
    return [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [choice]}}]


def parse_choice(result: Any) -> tuple[str | None, str | None]:
    """`(choice, None)` for a well-formed result, `(None, reason)` otherwise.

    The server stores whatever a client sends (any control name, any choice), so this is where bad
    results are caught.
    """
    if not isinstance(result, list) or not result:
        return None, "empty result (no choice made)"
    ours = [r for r in result if isinstance(r, dict) and r.get("from_name") == FROM_NAME]
    if not ours:
        names = sorted({str(r.get("from_name")) for r in result if isinstance(r, dict)})
        return None, f"no {FROM_NAME!r} control in result (found {names})"
    if len(ours) > 1:
        return None, f"{len(ours)} {FROM_NAME!r} results in one annotation"
    choices = (ours[0].get("value") or {}).get("choices")
    if not isinstance(choices, list) or len(choices) != 1:
        return None, f"expected exactly one choice, got {choices!r}"
    if choices[0] not in CHOICES:
        return None, f"unknown choice {choices[0]!r} (expected one of {', '.join(CHOICES)})"
    return str(choices[0]), None
