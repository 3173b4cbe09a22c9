"""The words of a scene besides its kind: colours, sizes, counts and relations (kinds: kinds.py)."""

COLOURS = {  # concept: (RGB, words)
    "red": ((212, 35, 40), ("red", "crimson", "scarlet")),
    "orange": ((245, 135, 25), ("orange", "tangerine")),
    "yellow": ((250, 215, 35), ("yellow", "golden", "lemon yellow")),
    "green": ((45, 165, 65), ("green", "emerald green")),
    "teal": ((20, 160, 160), ("teal", "turquoise")),
    "blue": ((35, 85, 220), ("blue", "cobalt blue", "azure")),
    "purple": ((130, 55, 185), ("purple", "violet")),
    "pink": ((245, 125, 185), ("pink", "rose pink")),
    "brown": ((125, 80, 40), ("brown", "chocolate brown")),
    "black": ((25, 25, 30), ("black", "jet black")),
    "white": ((245, 245, 245), ("white", "snow-white")),
    "grey": ((135, 135, 140), ("grey", "gray", "silver")),
}

SIZES = {  # concept: (radius factor, words); "medium" is never worded
    "tiny": (0.55, ("tiny", "miniature")),
    "small": (0.75, ("small", "little")),
    "medium": (1.0, ("",)),
    "large": (1.35, ("large", "big")),
    "huge": (1.75, ("huge", "giant", "enormous")),
}
SIZE_WEIGHTS = {"tiny": 0.1, "small": 0.12, "medium": 0.5, "large": 0.16, "huge": 0.12}

COUNT_WORDS = {1: ("a", "one", "a single"), 2: ("two", "a pair of"), 3: ("three",), 4: ("four",), 5: ("five",)}
COUNT_WEIGHTS = {1: 0.45, 2: 0.2, 3: 0.15, 4: 0.1, 5: 0.1}

# Relations of groups[0] to groups[1]; the inverse lets a rewording swap the two groups.
RELATIONS = {
    "above": ("above", "over", "floating above"),
    "below": ("below", "under", "beneath"),
    "left": ("to the left of", "left of"),
    "right": ("to the right of", "right of"),
    "beside": ("next to", "beside"),
    "around": ("surrounding", "around", "encircling"),
    "and": ("and", "with"),
    "inside": ("surrounded by", "encircled by"),  # only as the inverse of "around"
}
INVERSE = {"above": "below", "below": "above", "left": "right", "right": "left", "beside": "beside", "and": "and",
           "around": "inside"}
SAMPLED_RELATIONS = ("above", "below", "left", "right", "beside", "around", "and")
