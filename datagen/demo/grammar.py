"""The scene grammar: sampling scenes and wording them as prompts."""
from dataclasses import dataclass
from typing import Optional

from .backgrounds import BACKGROUNDS
from .framings import FRAMINGS
from .kinds import KINDS
from .streams import maybe, pick, pick_weighted, stream
from .styles import STYLES
from .tags import TAGS
from .vocab import COLOURS, COUNT_WEIGHTS, COUNT_WORDS, INVERSE, RELATIONS, SAMPLED_RELATIONS, SIZE_WEIGHTS, SIZES

TWO_GROUP_RATE = 0.38
# How often a scene leaves each part out: varied prompt structure keeps the mean-embedding
# baseline near real corpora (every extra clause pulls prompts toward a common direction).
P_NO_BACKGROUND, P_NO_STYLE, P_NO_FRAMING = 0.2, 0.5, 0.5
TAG_COUNT_WEIGHTS = {0: 0.65, 1: 0.25, 2: 0.1}


@dataclass(frozen=True)
class Group:
    kind: str  # key of KINDS
    colour: Optional[str]  # key of COLOURS; None: not named (the kind's usual colour)
    count: int
    size: str  # key of SIZES


@dataclass(frozen=True)
class Scene:
    groups: tuple  # one or two Groups
    relation: Optional[str]  # where groups[0] sits relative to groups[1] (key of RELATIONS)
    background: Optional[str]
    style: Optional[str]
    framing: Optional[str]
    tags: tuple = ()


def sample_group(rng, max_count=5):
    counts = {c: w for c, w in COUNT_WEIGHTS.items() if c <= max_count}
    colour = maybe(rng, COLOURS, p_none=0.2)
    return Group(pick(rng, KINDS), colour, pick_weighted(rng, counts), pick_weighted(rng, SIZE_WEIGHTS))


def sample_tags(rng):
    n = pick_weighted(rng, TAG_COUNT_WEIGHTS)
    tags = []
    while len(tags) < n:
        t = pick_weighted(rng, {k: t.weight for k, t in TAGS.items()})
        if t not in tags:
            tags.append(t)
    return tuple(tags)


def sample_scene(rng):
    """One random scene: what is drawn, where, on what, and how."""
    first = sample_group(rng)
    groups, relation = (first,), None
    if rng.random() < TWO_GROUP_RATE:
        first = sample_group(rng, max_count=3)
        second = sample_group(rng, max_count=3)
        while (second.kind, second.colour) == (first.kind, first.colour):
            second = sample_group(rng, max_count=3)
        relation = pick(rng, SAMPLED_RELATIONS)
        if relation == "around":  # a ring needs several objects around a single one
            first = Group(first.kind, first.colour, max(first.count, 3), first.size)
            second = Group(second.kind, second.colour, 1, second.size)
        groups = (first, second)
    return Scene(
        groups=groups,
        relation=relation,
        background=maybe(rng, BACKGROUNDS, P_NO_BACKGROUND),
        style=maybe(rng, STYLES, P_NO_STYLE),
        framing=maybe(rng, FRAMINGS, P_NO_FRAMING),
        tags=sample_tags(rng),
    )


def with_article(phrase):
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def word_group(group, rng):
    singular, plural = pick(rng, KINDS[group.kind].nouns)
    words = [pick(rng, SIZES[group.size][1])]
    if group.colour:
        words.append(pick(rng, COLOURS[group.colour][1]))
    words.append(singular if group.count == 1 else plural)
    head = " ".join(w for w in words if w)
    count = pick(rng, COUNT_WORDS[group.count])
    return with_article(head) if count == "a" else f"{count} {head}"


def word_subject(scene, rng):
    first = word_group(scene.groups[0], rng)
    if len(scene.groups) == 1:
        return first
    second, relation = word_group(scene.groups[1], rng), scene.relation
    if rng.random() < 0.35:  # say the same layout from the other group's side
        first, second, relation = second, first, INVERSE[relation]
    return f"{first} {pick(rng, RELATIONS[relation])} {second}"


def word_prompt(scene, rng):
    """A prompt for `scene`; synonyms and clause order come from `rng`, so rewordings differ."""
    head, clauses = word_subject(scene, rng), []
    if scene.background:
        bg = BACKGROUNDS[scene.background]
        if rng.random() < 0.75:
            head = f"{head} {pick(rng, bg.phrases)}"
        else:
            clauses.append(pick(rng, bg.clauses))
    style_leads = scene.style and not scene.framing and rng.random() < 0.4
    if scene.framing:
        head = f"{pick(rng, FRAMINGS[scene.framing].words)} {head}"
    elif style_leads:
        head = f"{pick(rng, STYLES[scene.style].prefixes)} {head}"
    if scene.style and not style_leads:
        clauses.append(pick(rng, STYLES[scene.style].suffixes))
    clauses += [pick(rng, TAGS[t].words) for t in scene.tags]
    rng.shuffle(clauses)
    return ", ".join([head] + clauses)


def sample_prompts(n, seed=0):
    """n (scene, prompt) pairs, one fresh scene each (no near-duplicates): for vocabulary checks."""
    out = []
    for k in range(n):
        rng = stream(seed, "scene", k)
        scene = sample_scene(rng)
        out.append((scene, word_prompt(scene, stream(seed, "wording", k, 0, 0))))
    return out
