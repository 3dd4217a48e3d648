"""Slot lists shared by the seed templates: many names and details, so a small model sees
varied surface text and has to copy the specific detail from the context, not memorise it."""

from __future__ import annotations

# (name, subject pronoun, possessive pronoun)
PEOPLE: tuple[tuple[str, str, str], ...] = tuple(
    [(n, "she", "her") for n in (
        "Maya", "Emma", "Sofia", "Aisha", "Lena", "Priya", "Chloe", "Hana", "Grace", "Nora",
        "Zoe", "Amara", "Lucia", "Mei", "Olivia", "Ines", "Fatima", "Clara", "Yuki", "Rosa",
        "Ella", "Nadia", "Julia", "Leila", "Sara", "Anna", "Eva", "Mila", "Tara", "Ruth",
    )]
    + [(n, "he", "his") for n in (
        "Leo", "Sam", "Omar", "Lucas", "Noah", "Ravi", "Daniel", "Kenji", "Mateo", "Finn",
        "Ethan", "Jonas", "Malik", "Tom", "Ben", "Arjun", "Diego", "Felix", "Hugo", "Ivan",
        "Jack", "Kai", "Liam", "Max", "Nico", "Oscar", "Pablo", "Theo", "Victor", "Yusuf",
    )]
)

# (gerund as the user says it, a follow-up question about it)
HOBBIES: tuple[tuple[str, str], ...] = (
    ("hiking", "Do you have a favorite trail?"),
    ("painting", "Do you paint with watercolors or acrylics?"),
    ("playing the guitar", "What kind of songs do you like to play?"),
    ("reading mystery novels", "Who is your favorite author?"),
    ("cooking", "What dish do you make best?"),
    ("running", "Are you training for a race?"),
    ("gardening", "What are you growing right now?"),
    ("playing chess", "Do you play online or with friends?"),
    ("swimming", "Do you swim in a pool or in the sea?"),
    ("baking bread", "Have you tried making sourdough?"),
    ("taking photos", "What do you like to photograph most?"),
    ("cycling", "Do you ride in the city or in the countryside?"),
    ("knitting", "What are you knitting at the moment?"),
    ("playing video games", "What game are you playing these days?"),
    ("dancing", "What style of dance do you enjoy?"),
    ("writing poems", "What do you like to write about?"),
    ("bird watching", "Which bird did you spot most recently?"),
    ("playing basketball", "Do you play on a team?"),
    ("learning languages", "Which language are you learning now?"),
    ("drawing comics", "Do you have a favorite character you draw?"),
    ("doing yoga", "Do you practice in the morning or in the evening?"),
    ("fishing", "Where is your favorite place to fish?"),
    ("playing the piano", "What piece are you practicing?"),
    ("rock climbing", "Do you climb indoors or outside?"),
)

FOODS: tuple[str, ...] = (
    "pizza", "sushi", "pasta", "tacos", "curry", "pancakes", "dumplings", "ramen",
    "falafel", "lasagna", "chocolate cake", "fresh strawberries", "grilled fish", "noodle soup",
    "apple pie", "vegetable stew", "burritos", "pho", "paella", "ice cream",
)

# Cities that read naturally after "I live in".
PLACES: tuple[str, ...] = (
    "Lisbon", "Toronto", "Nairobi", "Osaka", "Berlin", "Chicago", "Melbourne", "Madrid",
    "Seoul", "Dublin", "Cape Town", "Mumbai", "Oslo", "Mexico City", "Vienna", "Denver",
    "Manchester", "Lyon", "Auckland", "Cairo",
)

# (what the user will do, when) - phrased to follow "I'm going to" / "you're going to".
PLANS: tuple[str, ...] = (
    "visit my grandparents", "go to the beach", "start a new job", "run my first 10k race",
    "bake a cake for my friend", "go camping in the mountains", "see a concert",
    "paint my bedroom", "take a cooking class", "travel to the coast", "move to a new apartment",
    "go to a museum", "have a picnic in the park", "try out for the school play",
    "visit an old friend", "learn to ride a motorbike",
)
TIMES: tuple[str, ...] = (
    "tomorrow", "this weekend", "on Saturday", "next week", "on Friday evening",
    "next month", "on Sunday morning", "this summer",
)

# People the user mentions: "my sister" in the user's words, "your sister" in the reply.
RELATIVES: tuple[str, ...] = (
    "sister", "brother", "best friend", "mom", "dad", "cousin",
    "neighbor", "grandmother", "partner", "roommate",
)

ITEMS: tuple[str, ...] = (
    "apples", "marbles", "stickers", "books", "cookies", "pencils", "stamps", "shells",
    "cards", "flowers", "candies", "toy cars", "oranges", "crayons", "beads", "buttons",
)
