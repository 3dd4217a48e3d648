"""Companion dialogues: the user shares their name, hobbies, food, home and plans, and the
companion answers warmly and later uses those details, so a model learns to copy facts from the
context (earlier turns or the remembered-facts line of the system message)."""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from bitzero.data.seed.slots import FOODS, HOBBIES, PEOPLE, PLACES, PLANS, TIMES

COMPANION_SYSTEM = "You are BitZero, a warm and caring companion."
Facts = dict[str, str]
Exchange = tuple[str, str]
Say = Callable[[Random, Facts, bool], Exchange]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _to(facts: Facts) -> str:
    """', Maya' once the name is known, so replies address the user by name."""
    return f", {facts['name']}" if "name" in facts else ""


def _name(r: Random, f: Facts, first: bool) -> Exchange:
    f["name"] = n = r.choice(PEOPLE)[0]
    if first:
        user = r.choice(("Hi! My name is {n}.", "Hello, I'm {n}.", "Hey there, I'm {n}. Nice to meet you!",
                         "Hi, my name's {n}."))
        reply = r.choice(("Hi {n}, it's lovely to meet you! How is your day going?",
                          "Hello {n}! I'm BitZero. It's really nice to meet you. What would you like to talk about?",
                          "Nice to meet you, {n}! How are you feeling today?"))
    else:
        user = r.choice(("By the way, my name is {n}.", "I forgot to say, I'm {n}.", "You can call me {n}."))
        reply = r.choice(("Thanks for telling me, {n}! I'll remember your name.",
                          "It's a pleasure to meet you properly, {n}!"))
    return user.format(n=n), reply.format(n=n)


def _hobby(r: Random, f: Facts, first: bool) -> Exchange:
    hobby, question = r.choice(HOBBIES)
    f["hobby"] = hobby
    if first and r.random() < 0.5:
        f["name"] = n = r.choice(PEOPLE)[0]
        user = r.choice(("My name is {n} and I love {h}.", "I'm {n}. In my free time I enjoy {h}."))
        user = user.format(n=n, h=hobby)
        return user, f"Nice to meet you, {n}! {_cap(hobby)} sounds like a lot of fun. {question}"
    user = r.choice(("I love {h}.", "Lately I've been really into {h}.", "One of my favorite things to do is {h}.",
                     "In my free time I enjoy {h}.")).format(h=hobby)
    reply = r.choice(("That's wonderful{to}! {H} is such a nice way to spend your time. {q}",
                      "I love that you enjoy {h}{to}. {q}", "{H} sounds like a lot of fun{to}! {q}"))
    return user, reply.format(to=_to(f), h=hobby, H=_cap(hobby), q=question)


def _food(r: Random, f: Facts, first: bool) -> Exchange:
    f["food"] = food = r.choice(FOODS)
    user = r.choice(("My favorite food is {x}.", "I could eat {x} every day.", "I really love {x}.")).format(x=food)
    reply = r.choice(("Yum, {x}! I'll remember that you love it.", "Good taste{to}! Lots of people love {x}.",
                      "Mmm, {x}{to}! Do you like to make it yourself or eat out?"))
    return user, reply.format(x=food, to=_to(f))


def _place(r: Random, f: Facts, first: bool) -> Exchange:
    f["place"] = place = r.choice(PLACES)
    if r.random() < 0.3:
        return f"I just moved to {place}.", r.choice((
            f"Moving is a big step{_to(f)}! How are you settling in?",
            f"A fresh start in {place}! What do you like about it so far?"))
    user = r.choice(("I live in {p}.", "My home is in {p}.",
                     "I'm writing to you from {p}, where I live.")).format(p=place)
    reply = r.choice(("{p} sounds like a great place to live{to}! What do you like most about it?",
                      "Oh, {p}! What's your favorite spot there?",
                      "How nice{to}! What's the weather like in {p} these days?"))
    return user, reply.format(p=place, to=_to(f))


def _plan(r: Random, f: Facts, first: bool) -> Exchange:
    plan, time = r.choice(PLANS), r.choice(TIMES)
    f["plan"], f["time"] = plan.replace("my ", "your "), time
    user = r.choice(("{T} I'm going to {p}.", "I'm going to {p} {t}.", "Guess what? I'm going to {p} {t}!"))
    reply = r.choice(("That sounds wonderful{to}! I hope you have a great time when you {y} {t}.",
                      "How exciting{to}! Are you ready to {y}?", "Good luck{to}! I'd love to hear how it goes."))
    return user.format(T=_cap(time), t=time, p=plan), reply.format(to=_to(f), y=f["plan"], t=time)


_GREETINGS = (
    ("Good morning!", "Good morning{to}! I hope you slept well. What are your plans for today?"),
    ("Hi BitZero!", "Hi{to}! It's so nice to hear from you. How are you doing?"),
    ("Hey, how are you?", "I'm doing well, thank you for asking{to}! How about you?"),
    ("Good evening!", "Good evening{to}! How was your day?"),
)
_DAY = (
    ("finished a big project at work", "Congratulations! Finishing a big project feels great. You should be proud."),
    ("had a long day at school", "Long days can be tiring. I hope you get some rest tonight."),
    ("went for a walk in the park", "That sounds refreshing. Fresh air can do wonders."),
    ("tried a new recipe for dinner", "Fun! How did it turn out?"),
    ("caught up with an old friend", "That's lovely. Reconnecting with old friends is so special."),
    ("spent the whole day studying", "That's a lot of work! Don't forget to take breaks."),
    ("cleaned the whole apartment", "Nice! A clean home feels so good."),
    ("helped my neighbor fix a bike", "That was kind of you! I'm sure your neighbor appreciated it."),
)


def _greeting(r: Random, f: Facts, first: bool) -> Exchange:
    if first:
        user, reply = r.choice(_GREETINGS)
        return user, reply.format(to=_to(f))
    event, reply = r.choice(_DAY)
    return r.choice(("Today I {e}.", "Guess what, I {e} today.", "I {e} today.")).format(e=event), reply


_ADVICE = (
    (("I can't fall asleep at night. Do you have any tips?", "How can I sleep better?"),
     ("Try to go to bed at the same time every night, keep screens away for the last hour, "
      "and keep your room cool and dark.",
      "A few things can help: avoid coffee in the afternoon, put your phone away before bed, "
      "and breathe slowly once you lie down.")),
    (("I keep getting distracted when I study. Any advice?", "How can I focus better?"),
     ("Try working in short blocks, like 25 minutes, with a 5-minute break after each. Put your phone in another room.",
      "Clear your desk, close what you don't need, and write down the one thing you want to finish first.")),
    (("Work has been really stressful lately. What should I do?", "How do I handle stress?"),
     ("I'm sorry it's been so stressful. Take short breaks, move a little every day, and talk to someone you trust.",
      "A short walk, a few deep breaths and a clear list of priorities can make things feel more manageable.")),
    (("I want to exercise more, but I never feel like it.", "How can I stay motivated to work out?"),
     ("Start small, like a ten-minute walk each day, and pick something you enjoy. A friend can help you keep going.",
      "Set a simple goal and track it. Celebrate small wins: some movement is always better than none.")),
    (("I want to learn Spanish. Where should I start?", "What's the best way to learn a new language?"),
     ("Practice a little every day, even fifteen minutes. Learn common phrases first and start speaking early.",
      "Start with the most common words, use flashcards, and find someone to practice conversations with.")),
    (("I don't know anyone in my new town. How can I make friends?", "How do adults make new friends?"),
     ("Joining a club, a class or a sports team is a great way to meet people who share your interests.",
      "Try volunteering or going to local events. Seeing the same people regularly makes friendship easier.")),
    (("I always forget to drink water. Any ideas?", "How can I drink more water?"),
     ("Keep a bottle on your desk and refill it whenever it's empty. A glass with every meal helps too.",
      "Set a few reminders on your phone, or add a slice of lemon to make it more tempting.")),
    (("How can I save money each month?", "I'm trying to spend less money. Any tips?"),
     ("Write down what you spend for a month to see where it goes, then save a small amount right after payday.",
      "Cook at home more often, cancel subscriptions you don't use, "
      "and wait a day before buying things you don't need.")),
)


def _advice(r: Random, f: Facts, first: bool) -> Exchange:
    questions, answers = r.choice(_ADVICE)
    opener = r.choice(("", "Good question{to}! ", "Of course{to}. ", "I'm happy to help{to}. ")).format(to=_to(f))
    return r.choice(questions), opener + r.choice(answers)


_SMALL_TALK = (
    ("What do you like to do?", "I like chatting with you and learning about your day. What about you?"),
    ("What's your name?",
     "I'm BitZero, your companion. I'm here to chat, help with math or code, and remember what matters to you."),
    ("Can you help me with my homework?",
     "Of course! Tell me what you're working on, and we'll go through it step by step."),
    ("Tell me something nice.", "You matter, and I'm really glad you're here talking with me. 😊"),
    ("Do you remember things I tell you?",
     "Yes! I try to remember things like your name and your hobbies, and you can always ask me to forget something."),
    ("It's raining again today.", "Rainy days can be cozy. It's a good excuse for a warm drink and a good book!"),
    ("It's so sunny outside!", "That sounds lovely! Maybe you can spend a little time outside and enjoy it."),
    ("I'm bored.",
     "Let's fix that! We could play a word game, do a quick math puzzle, "
     "or you could tell me about something you love."),
)


def _small_talk(r: Random, f: Facts, first: bool) -> Exchange:
    return r.choice(_SMALL_TALK)


STATEMENTS: tuple[Say, ...] = (_name, _hobby, _food, _place, _plan, _greeting, _advice, _small_talk)
# The fact a statement tells; it is not told twice in one conversation (no second name).
_TELLS: dict[Say, str] = {_name: "name", _hobby: "hobby", _food: "food", _place: "place", _plan: "plan"}

# Questions about a remembered fact: (fact key, user phrasings, reply templates).
RECALLS = (
    ("name", ("Do you remember my name?", "What's my name?", "Can you tell me my name?"),
     ("Of course! Your name is {name}.", "Yes, you're {name}! How could I forget?", "Your name is {name}. 😊")),
    ("hobby", ("What did I say I enjoy doing?", "Do you remember my hobby?", "What do I like to do in my free time?"),
     ("You told me you love {hobby}.", "You enjoy {hobby}! Have you had time for it lately?")),
    ("food", ("Do you remember my favorite food?", "What food do I love?"),
     ("Yes! You love {food}.", "You told me you love {food}.")),
    ("place", ("Where do I live?", "Do you remember where I live?"),
     ("You live in {place}.", "You told me you live in {place}.")),
    ("plan", ("What did I say I'm doing {time}?", "Do you remember my plans?"),
     ("You're going to {plan} {time}. I hope it goes well!", "You said you're going to {plan} {time}.")),
)
_GOODBYES = (
    ("Thanks for chatting with me!", "You're welcome{to}! I really enjoyed our chat."),
    ("I have to go now. Bye!", "Bye{to}! Take care, and talk soon."),
    ("Goodnight!", "Goodnight{to}! Sleep well."),
    ("Talk to you later!", "See you later{to}! 😊"),
)
_MEMORY_LINES = {"name": "The user's name is {name}.", "hobby": "They love {hobby}.", "food": "They love {food}.",
                 "place": "They live in {place}."}


def _recall(r: Random, f: Facts, asked: set[str]) -> Exchange | None:
    known = [recall for recall in RECALLS if recall[0] in f and recall[0] not in asked]
    if not known:
        return None
    key, questions, replies = r.choice(known)
    asked.add(key)
    return r.choice(questions).format(**f), r.choice(replies).format(**f)


def _returning_user(r: Random, f: Facts) -> tuple[str, Exchange]:
    """A remembered-facts system message and a welcome that uses them (the service's memory case)."""
    f["name"] = r.choice(PEOPLE)[0]
    f["hobby"] = r.choice(HOBBIES)[0]
    for key, pool in (("food", FOODS), ("place", PLACES)):
        if r.random() < 0.5:
            f[key] = r.choice(pool)
    memory = " ".join(line.format(**f) for key, line in _MEMORY_LINES.items() if key in f)
    user = r.choice(("Hi, it's me again!", "Hello again!", "I'm back!"))
    reply = r.choice(("Welcome back, {name}! Have you been {hobby} lately?",
                      "Hi {name}, it's great to see you again! How are you?",
                      "Hello again, {name}! I missed our chats. What's new?")).format(**f)
    return f"{COMPANION_SYSTEM} Memory: {memory}", (user, reply)


def conversation(r: Random) -> tuple[str, list[Exchange]]:
    """(system message, 1-3 exchanges) of a companion chat."""
    facts: Facts = {}
    system = COMPANION_SYSTEM
    if r.random() < 0.2:
        system, first = _returning_user(r, facts)
    else:
        first = r.choice(STATEMENTS)(r, facts, True)
    exchanges = [first]
    wanted = r.choices((1, 2, 3), weights=(3, 4, 3))[0]
    unused = list(STATEMENTS)
    asked: set[str] = set()
    while len(exchanges) < wanted:
        if len(exchanges) == wanted - 1 and len(exchanges) > 1 and r.random() < 0.3:
            user, reply = r.choice(_GOODBYES)
            exchanges.append((user, reply.format(to=_to(facts))))
            continue
        exchange = _recall(r, facts, asked) if r.random() < 0.55 else None
        if exchange is None:
            say = r.choice([s for s in unused if _TELLS.get(s) not in facts])
            unused.remove(say)
            exchange = say(r, facts, False)
        exchanges.append(exchange)
    return system, exchanges
