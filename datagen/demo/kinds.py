"""What a scene can show: each kind's nouns, usual colour and drawing function."""
from typing import Callable, NamedTuple, Optional

from .creatures import (draw_bird, draw_butterfly, draw_cat, draw_dog, draw_fish, draw_ladybug, draw_owl,
                        draw_penguin, draw_snail, draw_whale)
from .figures import (draw_anchor, draw_apple, draw_balloon, draw_boat, draw_cactus, draw_candle, draw_car,
                      draw_castle, draw_clock, draw_crown, draw_cupcake, draw_flower, draw_ghost, draw_house,
                      draw_ice_cream, draw_key, draw_kite, draw_leaf, draw_lighthouse, draw_moon, draw_mountain,
                      draw_mushroom, draw_pizza, draw_pumpkin, draw_robot, draw_rocket, draw_snowman, draw_sun,
                      draw_teacup, draw_tree, draw_umbrella)
from .shapes import (draw_arrow, draw_circle, draw_cross, draw_diamond, draw_heart, draw_hexagon, draw_ring,
                     draw_square, draw_star, draw_triangle)


class Kind(NamedTuple):
    nouns: tuple  # (singular, plural) pairs, all naming the same thing
    colour: Optional[str]  # usual colour when the prompt names none; None: any
    draw: Callable


KINDS = {
    "circle": Kind((("circle", "circles"), ("disc", "discs")), None, draw_circle),
    "square": Kind((("square", "squares"), ("box", "boxes")), None, draw_square),
    "triangle": Kind((("triangle", "triangles"),), None, draw_triangle),
    "star": Kind((("star", "stars"),), None, draw_star),
    "heart": Kind((("heart", "hearts"),), None, draw_heart),
    "hexagon": Kind((("hexagon", "hexagons"),), None, draw_hexagon),
    "diamond": Kind((("diamond", "diamonds"), ("rhombus", "rhombuses")), None, draw_diamond),
    "cross": Kind((("cross", "crosses"), ("plus sign", "plus signs")), None, draw_cross),
    "ring": Kind((("ring", "rings"), ("donut", "donuts")), None, draw_ring),
    "arrow": Kind((("arrow", "arrows"),), None, draw_arrow),
    "house": Kind((("house", "houses"), ("cottage", "cottages")), "yellow", draw_house),
    "tree": Kind((("tree", "trees"),), "green", draw_tree),
    "sun": Kind((("sun", "suns"),), "yellow", draw_sun),
    "moon": Kind((("crescent moon", "crescent moons"), ("moon", "moons")), "yellow", draw_moon),
    "fish": Kind((("fish", "fish"), ("goldfish", "goldfish")), "orange", draw_fish),
    "cat": Kind((("cat face", "cat faces"), ("cat", "cats"), ("kitten", "kittens")), "orange", draw_cat),
    "car": Kind((("car", "cars"),), "blue", draw_car),
    "flower": Kind((("flower", "flowers"), ("daisy", "daisies")), "pink", draw_flower),
    "mountain": Kind((("mountain", "mountains"), ("mountain peak", "mountain peaks")), "grey", draw_mountain),
    "boat": Kind((("sailboat", "sailboats"), ("boat", "boats")), "brown", draw_boat),
    "balloon": Kind((("balloon", "balloons"),), "red", draw_balloon),
    "bird": Kind((("bird", "birds"), ("songbird", "songbirds")), "blue", draw_bird),
    "mushroom": Kind((("mushroom", "mushrooms"), ("toadstool", "toadstools")), "red", draw_mushroom),
    "rocket": Kind((("rocket", "rockets"), ("spaceship", "spaceships")), "white", draw_rocket),
    "umbrella": Kind((("umbrella", "umbrellas"),), "red", draw_umbrella),
    "apple": Kind((("apple", "apples"),), "red", draw_apple),
    "cactus": Kind((("cactus", "cacti"),), "green", draw_cactus),
    "butterfly": Kind((("butterfly", "butterflies"),), "orange", draw_butterfly),
    "snowman": Kind((("snowman", "snowmen"),), "white", draw_snowman),
    "icecream": Kind((("ice cream cone", "ice cream cones"), ("ice cream", "ice creams")), "pink", draw_ice_cream),
    "crown": Kind((("crown", "crowns"),), "yellow", draw_crown),
    "kite": Kind((("kite", "kites"),), "red", draw_kite),
    "lighthouse": Kind((("lighthouse", "lighthouses"),), "red", draw_lighthouse),
    "castle": Kind((("castle", "castles"),), "grey", draw_castle),
    "teacup": Kind((("teacup", "teacups"), ("cup of tea", "cups of tea")), "blue", draw_teacup),
    "clock": Kind((("clock", "clocks"), ("wall clock", "wall clocks")), "brown", draw_clock),
    "pizza": Kind((("pizza slice", "pizza slices"), ("slice of pizza", "slices of pizza")), "red", draw_pizza),
    "candle": Kind((("candle", "candles"),), "white", draw_candle),
    "robot": Kind((("robot", "robots"), ("robot head", "robot heads")), "grey", draw_robot),
    "whale": Kind((("whale", "whales"),), "blue", draw_whale),
    "dog": Kind((("dog face", "dog faces"), ("puppy", "puppies"), ("dog", "dogs")), "brown", draw_dog),
    "owl": Kind((("owl", "owls"),), "brown", draw_owl),
    "penguin": Kind((("penguin", "penguins"),), "black", draw_penguin),
    "ghost": Kind((("ghost", "ghosts"),), "white", draw_ghost),
    "pumpkin": Kind((("pumpkin", "pumpkins"),), "orange", draw_pumpkin),
    "ladybug": Kind((("ladybug", "ladybugs"), ("ladybird", "ladybirds")), "red", draw_ladybug),
    "snail": Kind((("snail", "snails"),), "brown", draw_snail),
    "anchor": Kind((("anchor", "anchors"),), "grey", draw_anchor),
    "leaf": Kind((("leaf", "leaves"),), "green", draw_leaf),
    "key": Kind((("key", "keys"),), "yellow", draw_key),
    "cupcake": Kind((("cupcake", "cupcakes"),), "pink", draw_cupcake),
}
