"""Built-in filler prose: essay-like English sentences about everyday life, written for evalkit.

Sentences come from templates filled with phrase lists, so consecutive sentences differ. The vocabulary
holds no digits and none of the words tasks hide (pass keys, food, ``needles.WORDS``), so a needle's
value can only be found where the needle is. Tests check both properties.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

SUBJECTS = (
    "the old gardener", "a young teacher", "my neighbour", "the librarian", "a quiet student",
    "the ferry captain", "our postman", "a travelling painter", "the night watchman", "an elderly fisherman",
    "the school principal", "a retired nurse", "the shepherd", "my cousin", "a visiting scholar",
    "the station master", "the carpenter", "a shy poet", "the town mayor", "my grandfather",
    "a careful tailor", "the museum guide", "an eager apprentice", "the choir leader", "a wandering musician",
    "the harbour master's daughter", "the blacksmith", "a patient weaver", "the forest ranger", "my aunt",
)

ACTIONS = (
    "repaired the wooden fence", "painted the small boat", "swept the stone steps", "mended an old coat",
    "tidied the dusty attic", "planted a row of young trees", "cleaned the tall windows", "fixed the garden gate",
    "wrote a long letter", "sorted a pile of old newspapers", "carried firewood up the hill",
    "polished the brass handles", "rebuilt the low stone wall", "pruned the hedges", "oiled the squeaking door",
    "folded the freshly washed sheets", "copied a map by hand", "watered the flower beds",
    "trimmed the grass along the path", "restored a faded painting", "read the whole newspaper",
    "walked the long way around the lake", "raked the fallen leaves", "washed the muddy boots",
    "hung the laundry in the sun", "counted the passing ships", "cleared the snow from the road",
    "tuned the old church organ", "checked the weather from the porch", "rearranged the shelves",
)

PLACES = (
    "near the river", "behind the library", "on the hill above the town", "in the market square",
    "at the edge of the forest", "beside the railway station", "along the harbour wall", "in the quiet courtyard",
    "by the village green", "at the end of the lane", "under the old bridge", "outside the town hall",
    "on the far side of the valley", "in the shade of the linden trees", "next to the abandoned mill",
    "across from the post office", "in the narrow streets of the old quarter", "beside the duck pond",
    "at the foot of the mountain", "on the windy beach",
)

TIMES = (
    "Early in the morning", "Late in the afternoon", "On quiet evenings", "After the first snow",
    "Every spring", "During the long summer holidays", "Just before sunset", "On rainy weekends",
    "In the middle of winter", "Once the harvest was over", "At the start of each autumn", "Long before dawn",
    "On market days", "After the storm had passed", "Whenever the fog rolled in",
)

ADVERBS = (
    "slowly", "carefully", "without any hurry", "with great patience", "quietly", "cheerfully",
    "with surprising skill", "almost every day", "now and then", "with real pleasure", "out of habit",
    "more thoroughly than anyone expected",
)

REASONS = (
    "because the weather had finally turned", "because nobody else had the time", "since the days were growing longer",
    "as the season demanded", "because it seemed the right thing to do", "while the town was still asleep",
    "after a long conversation with friends", "because the work had waited long enough",
    "since visitors were expected soon", "because small tasks bring a kind of peace",
)

ACTIVITIES = (
    "walking along the coast", "reading old travel journals", "watching the clouds drift by",
    "sorting through forgotten photographs", "learning the names of birds", "sketching the rooftops",
    "listening to the rain on the roof", "writing letters to distant friends", "tending a small garden",
    "exploring unfamiliar streets", "mending what is broken", "talking with strangers on the train",
    "sitting by an open window", "keeping a diary", "cycling through the countryside",
    "studying the stars on clear nights", "fixing things with your own hands", "visiting small museums",
    "taking the slow road home", "practising an instrument every evening", "wandering through a quiet park",
    "collecting stories from older relatives", "learning a new language", "rowing across a still lake",
)

JUDGEMENTS = (
    "more rewarding", "more restful", "harder to explain", "more surprising", "more useful",
    "far more calming", "more demanding", "less tiring", "more lasting", "more honest",
)

OBSERVATIONS = (
    "the light changes the colour of the water", "the wind carries the sound of chimes across the valley",
    "the streets grow quiet after sunset", "the old houses lean toward one another",
    "the river runs faster after heavy rain", "the swallows return when the evenings grow warm",
    "the hills look closer on a clear day", "the town feels smaller in winter",
    "the bridge creaks whenever a cart goes over it", "the moss grows thickest on the northern walls",
    "the market smells of wet earth and cut flowers", "the church chimes sound a little late",
    "the fog hides the far shore for hours", "the children race their shadows along the pier",
    "the gulls gather whenever the boats come in", "the paint on the shutters fades a little every year",
    "the path through the meadow changes with every season", "the harbour lights shimmer on calm nights",
    "the oldest trees in the park have names", "the evening trains are always half empty",
    "the sound of a distant radio drifts through open windows", "the stones of the square are worn smooth",
    "the frost draws patterns on every window", "the old tower can be seen from every street",
)

TEMPLATES = (
    "{time}, {subject} {action} {place}.",
    "{Subject} {action} {adverb}, {reason}.",
    "Many people find that {activity} is {judgement} than {activity2}.",
    "{Activity} {place} is a habit that {subject} never gave up.",
    "In the end, {observation}, and {subject} was glad to see it.",
    "Some say that {observation}, although few have watched closely.",
    "{time}, {observation}.",
    "It is easy to forget how much {activity} can teach a patient mind.",
    "{Subject} once explained that {activity} {place} clears the head.",
    "Nobody could say why {subject} {action} {place}, but it became a local story.",
    "There is something calm about {activity}, especially {time_lower}.",
    "When {subject} {action}, {subject2} {action2} {adverb}.",
    "{Subject} and {subject2} agreed that {observation}.",
    "Ask anyone {place} and they will tell you that {observation}.",
    "The best part of {activity} is that it asks for nothing but time.",
    "{Subject} {action} {adverb} and then spent the afternoon {activity}.",
)


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def make_sentence(rng: random.Random) -> str:
    """One sentence: a random template with every slot filled from the phrase lists."""
    template = rng.choice(TEMPLATES)
    subject, subject2 = rng.sample(SUBJECTS, 2)
    action, action2 = rng.sample(ACTIONS, 2)
    activity, activity2 = rng.sample(ACTIVITIES, 2)
    time = rng.choice(TIMES)
    slots = {
        "time": time,
        "time_lower": time[:1].lower() + time[1:],
        "subject": subject,
        "Subject": _capitalize(subject),
        "subject2": subject2,
        "action": action,
        "action2": action2,
        "place": rng.choice(PLACES),
        "adverb": rng.choice(ADVERBS),
        "reason": rng.choice(REASONS),
        "activity": activity,
        "Activity": _capitalize(activity),
        "activity2": activity2,
        "judgement": rng.choice(JUDGEMENTS),
        "observation": rng.choice(OBSERVATIONS),
    }
    return template.format(**slots)


def generate_sentences(seed: int) -> Iterator[str]:
    """Endless deterministic stream of sentences for ``seed``; never the same sentence twice in a row."""
    rng = random.Random(f"evalkit.prose:{seed}")
    previous = ""
    while True:
        sentence = make_sentence(rng)
        if sentence != previous:
            yield sentence
            previous = sentence
