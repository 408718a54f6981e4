"""Word lists for generated needle values (a leaf: needles and needle kinds both draw from it)."""

from __future__ import annotations

# Concrete nouns for `value: {kind: word}`: one lower-case word each, easy to spell back, no plurals.
WORDS: tuple[str, ...] = (
    "accordion", "acorn", "album", "anchor", "anvil", "apron", "armchair", "arrow", "axe", "backpack",
    "badge", "balloon", "banjo", "barrel", "baton", "beacon", "beaker", "bell", "belt", "binoculars",
    "blanket", "bookmark", "boomerang", "bottle", "bracelet", "broom", "bucket", "buckle", "button", "cactus",
    "calculator", "camera", "candle", "cannon", "canoe", "carpet", "cauldron", "chandelier", "chessboard", "chimney",
    "chisel", "clarinet", "clock", "compass", "cork", "cradle", "crayon", "crown", "crystal", "cushion",
    "dagger", "dice", "dolphin", "doorbell", "dragonfly", "drum", "easel", "envelope", "eraser", "falcon",
    "feather", "fiddle", "flashlight", "flute", "fossil", "funnel", "gazebo", "giraffe", "globe", "glove",
    "goblet", "gong", "guitar", "hammer", "hammock", "harmonica", "harp", "helmet", "hourglass", "igloo",
    "jigsaw", "kaleidoscope", "kangaroo", "kayak", "kettle", "kite", "ladder", "ladle", "lantern", "lighthouse",
    "lizard", "locket", "magnet", "mailbox", "mandolin", "marble", "mask", "medal", "megaphone", "microscope",
    "mirror", "mitten", "mosaic", "necklace", "teacup", "notebook", "oar", "octopus", "origami", "ostrich",
    "paddle", "padlock", "paintbrush", "parachute", "parasol", "pebble", "pelican", "pendulum", "penguin", "periscope",
    "piano", "pillow", "pinecone", "pitchfork", "plank", "pliers", "pocketknife", "porcupine", "puppet", "pyramid",
    "quill", "raccoon", "raft", "rhinoceros", "ribbon", "robot", "rocket", "rope", "rucksack", "saddle",
    "sailboat", "sandal", "saxophone", "scarf", "scissors", "scooter", "scroll", "seashell", "shovel", "skateboard",
    "sled", "slingshot", "snorkel", "snowflake", "spatula", "sponge", "spoon", "squirrel", "stapler", "starfish",
    "statue", "stethoscope", "stopwatch", "submarine", "sundial", "surfboard", "suitcase", "sword", "tambourine",
    "tape", "teapot", "telescope", "tent", "thimble", "thermometer", "tiara", "toaster", "tortoise", "totem",
    "tractor", "trampoline", "trombone", "trophy", "trumpet", "tuba", "tugboat", "tulip", "turban", "typewriter",
    "ukulele", "umbrella", "unicycle", "vase", "violin", "volcano", "wagon", "walrus", "wardrobe", "whistle",
    "windmill", "wrench", "xylophone", "yacht", "yoyo", "zebra", "zeppelin", "zipper",
)
