"""Emotional exchanges: the user feels one of the eight emotions, mildly or strongly, and the
companion answers in kind, reflecting the user's own situation back in the second person."""

from __future__ import annotations

from random import Random

from bitzero.data.seed.verify import SeedError

EMOTIONS = ("joy", "sadness", "anger", "fear", "surprise", "disgust", "trust", "anticipation")
EMOJI = {
    "joy": "😊", "sadness": "😢", "anger": "😡", "fear": "😨",
    "surprise": "😮", "disgust": "🤢", "trust": "🤗", "anticipation": "🤔",
}

# Situations use markers so one sentence serves both voices: "{I} passed {my} test" is
# "I passed my test" from the user and "you passed your test" from the companion.
_USER_VOICE = {"I": "I", "my": "my", "me": "me", "am": "am", "was": "was"}
_YOUR_VOICE = {"I": "you", "my": "your", "me": "you", "am": "are", "was": "were"}

SITUATIONS: dict[str, tuple[str, ...]] = {
    "joy": ("{I} passed {my} driving test", "{my} sister just had a baby", "{I} got the job {I} interviewed for",
            "{my} team won the final", "{I} finished {my} first painting", "{my} best friend is coming to visit",
            "{I} got an A on {my} math exam", "{I} finally ran {my} first marathon"),
    "sadness": ("{my} dog passed away last week", "{my} best friend moved to another city",
                "{I} didn't get the job {I} wanted", "{I} have been feeling lonely since {I} moved",
                "{my} grandmother is in the hospital", "{I} failed {my} exam",
                "{my} plans for the weekend fell through", "{I} had a big fight with {my} brother"),
    "anger": ("{my} coworker took credit for {my} work", "someone scratched {my} car in the parking lot",
              "{my} landlord ignored {my} messages again", "{my} package got lost for the third time",
              "{my} roommate ate the food {I} cooked for tomorrow", "a driver almost hit {me} and then yelled at {me}",
              "{my} internet company charged {me} twice", "{my} brother broke {my} headphones and didn't say sorry"),
    "fear": ("{I} have a job interview tomorrow", "{I} have to give a speech in front of the whole school",
             "{I} heard strange noises outside {my} window last night", "{my} doctor wants to run more tests",
             "{I} {am} flying for the first time next week", "{I} might lose {my} job",
             "a big storm is coming to {my} town", "{my} final exams start next week"),
    "surprise": ("{my} friends threw {me} a surprise party", "{I} ran into {my} old teacher at the airport",
                 "{I} won a raffle {I} forgot {I} had entered", "{my} shy little brother sang on stage tonight",
                 "it snowed in the middle of May", "{my} boss gave everyone the day off",
                 "{I} found fifty dollars in an old jacket", "{my} parents are moving abroad"),
    "disgust": ("someone left old food rotting in the office fridge", "{I} found a hair in {my} soup at a restaurant",
                "the bathroom at the train station was filthy", "{my} neighbor throws trash over the fence",
                "{I} saw someone spit on the bus floor", "the milk {I} bought today was already sour",
                "a company {I} liked was caught lying to its customers",
                "{I} stepped in something gross on the sidewalk"),
    "trust": ("{my} best friend always keeps {my} secrets", "{I} can tell {my} sister anything",
              "{my} new team really has {my} back", "{I} know {I} can count on {my} parents",
              "{my} doctor really listens to {me}", "{my} coach believes in {me}",
              "{my} partner supported {me} through a hard year",
              "{my} old friend lent {me} money without asking questions"),
    "anticipation": ("{I} {am} going on vacation next week", "{my} favorite band releases a new album on Friday",
                     "{I} start {my} new job on Monday", "{my} birthday is in three days",
                     "{I} {am} meeting {my} pen pal in person for the first time", "{I} get {my} exam results tomorrow",
                     "the new season of {my} favorite show starts tonight",
                     "{I} {am} moving into {my} first apartment soon"),
}

# (mild, strong) user templates: {sit} mid-sentence, {Sit} at the start of a sentence.
USER: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "joy": (("I'm feeling happy today because {sit}.", "Something nice happened today: {sit}.",
             "I'm pretty glad right now. {Sit}."),
            ("I'm SO happy right now! {Sit}!", "This is the best day ever! {Sit}!!",
             "I can't stop smiling! {Sit}! I'm so excited!")),
    "sadness": (("I'm feeling a bit down because {sit}.", "I'm a little sad today. {Sit}.",
                 "Today was kind of a blue day. {Sit}."),
                ("I'm really upset. {Sit}, and I can't stop crying.", "I feel so sad and empty. {Sit}.",
                 "Everything feels heavy today. {Sit} and I'm heartbroken.")),
    "anger": (("I'm a bit annoyed. {Sit}.", "Ugh, I'm irritated because {sit}.", "It bugs me that {sit}."),
              ("I'm so angry right now! {Sit}!", "I'm absolutely furious. {Sit}!",
               "This makes me so mad! {Sit}, can you believe it?")),
    "fear": (("I'm a little nervous because {sit}.", "I'm kind of worried. {Sit}.", "I feel a bit anxious. {Sit}."),
             ("I'm really scared. {Sit} and I can't stop shaking.", "I'm terrified! {Sit}.",
              "I'm so afraid right now. {Sit}, and I don't know what to do.")),
    "surprise": (("Huh, that was unexpected. {Sit}.", "I was surprised today: {sit}.", "Guess what? {Sit}."),
                 ("Oh my gosh, I'm shocked! {Sit}!", "I can't believe it! {Sit}!",
                  "Wow, I'm completely amazed. {Sit}!")),
    "disgust": (("Ew. {Sit}.", "That was kind of nasty. {Sit}.", "I'm a bit disgusted. {Sit}."),
                ("That was so disgusting! {Sit}!", "I feel sick just thinking about it. {Sit}.",
                 "Totally revolting! {Sit}, yuck!")),
    "trust": (("I feel lucky. {Sit}.", "It's comforting to know that {sit}.", "I'm grateful that {sit}."),
              ("I trust them completely! {Sit}, and it means the world to me.",
               "I feel so safe and supported. {Sit}.",
               "I can always rely on them. {Sit}, and I'm so thankful.")),
    "anticipation": (("I'm looking forward to something. {Sit}.", "{Sit}, and I'm curious how it will go.",
                      "I keep thinking about it: {sit}."),
                     ("I can't wait! {Sit}!", "I'm counting down the days! {Sit}!",
                      "I'm so excited about it! {Sit} and I can barely sit still!")),
}

# (mild, strong) replies: {sit}/{Sit} are the situation in the companion's voice.
REPLY: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "joy": (("That's lovely to hear! I'm glad {sit}. 😊",
             "How nice! You deserve good days like this. How are you going to celebrate?",
             "I'm happy for you! It's great that {sit}."),
            ("Wow, congratulations! I'm so happy that {sit}! You must be over the moon. 😊",
             "That's amazing news! {Sit}, and that's a big deal. Enjoy every moment of it!",
             "I can feel your excitement! I'm thrilled {sit}. Tell me everything!")),
    "sadness": (("I'm sorry {sit}. That sounds hard. Do you want to talk about it?",
                 "That sounds disappointing. It's okay to feel down about it. I'm here if you want to talk.",
                 "I'm sorry to hear that. Feeling a little sad after that is completely normal."),
                ("I'm so sorry {sit}. That must hurt a lot, and it's okay to take your time. I'm here with you. 🤗",
                 "That sounds really painful. You don't have to go through this alone. "
                 "Would it help to tell me more about how you're feeling?",
                 "Something like that can hurt so much. "
                 "Please be gentle with yourself today, and remember that I'm here whenever you want to talk.")),
    "anger": (("That sounds really annoying. I understand why you're irritated that {sit}.",
               "I'd be frustrated too. Do you want to figure out what to do next?",
               "That's irritating. It's fair to feel annoyed about it."),
              ("That's completely unfair, and your anger makes sense. I'm sorry {sit}. "
               "Would it help to take a few deep breaths and then plan what to say?",
               "I can hear how furious you are. Anyone would be upset that {sit}. "
               "Let's think about what you can do once you feel a bit calmer.",
               "That's not okay at all, and your feelings are valid. "
               "Do you want to vent a bit more, or look for a solution together?")),
    "fear": (("It's normal to feel a bit nervous about that. What part worries you most?",
              "It's natural to feel a little anxious. You're more prepared than you think.",
              "Feeling a little worried makes sense when {sit}. Would it help to make a small plan together?"),
             ("That sounds really scary, and I'm here with you. "
              "Let's take a slow breath together. You don't have to face this alone. 🤗",
              "I understand why you're so scared. Fear can feel overwhelming, but it will pass. "
              "What would help you feel a little safer right now?",
              "It's okay to be afraid when {sit}. Let's take it one small step at a time. I'm right here with you.")),
    "surprise": (("Oh, that's unexpected! How do you feel about it?", "What a surprise that {sit}! Tell me more.",
                  "Well, that's not something you see every day! Was it a nice surprise?"),
                 ("Wow, no way! {Sit}? That's incredible! 😮 How did you react?",
                  "That's such a shock! I can't believe {sit}. What happened next?",
                  "Oh my, what a surprise! I'd be amazed too. How are you feeling about it now?")),
    "disgust": (("Ew, that sounds unpleasant. I understand why it bothered you.",
                 "That's pretty gross. I'd be put off too.",
                 "Yuck. It makes sense that you feel a bit disgusted that {sit}."),
                ("That's really disgusting! 🤢 I'm sorry you had to deal with that.",
                 "That's revolting. It's completely understandable that you feel sick about it. "
                 "Maybe do something pleasant to take your mind off it.",
                 "Ugh, how awful that {sit}. Anyone would be grossed out by that.")),
    "trust": (("That's really nice. It's good to have people you can rely on.",
               "I'm glad {sit}. Trust like that is precious.",
               "That sounds comforting. Trust makes everything a little easier."),
              ("That's wonderful! Having someone you can trust completely is a true gift. I'm really happy {sit}. 🤗",
               "It's beautiful that {sit}. Relationships built on trust like that are worth treasuring.",
               "I love hearing that. Feeling safe and supported makes such a difference. Hold on to that.")),
    "anticipation": (("That sounds exciting! Are you looking forward to it?",
                      "How nice that {sit}! What are you hoping for?",
                      "It's fun to have something to look forward to. How are you preparing?"),
                     ("The wait must be so hard! I'm excited for you that {sit}. 😊",
                      "I love your excitement! Counting down the days is half the fun. "
                      "What are you looking forward to most?",
                      "That's so exciting! {Sit}, and I hope it's even better than you imagine.")),
}

_POSITIVE = ("joy", "surprise", "trust", "anticipation")
# Second exchanges: thanks after comfort for hard feelings, sharing more for good ones.
_THANKS_HARD = (("Thank you for listening.", "Anytime. I'm always here for you."),
                ("Thanks, that helps a little.", "I'm glad. Come back and tell me how it goes, okay?"),
                ("You always know what to say.", "That means a lot to me. I care about how you're doing."))
_THANKS_GOOD = (("Thanks! I just had to tell someone.", "I'm so glad you told me! Your news made my day. 😊"),
                ("You always know what to say.",
                 "That means a lot to me. I love sharing moments like this with you."),
                ("I'm glad I could share it with you.", "Me too! Tell me more whenever you like."))


def _voice(template: str, voice: dict[str, str]) -> tuple[str, str]:
    """(mid-sentence form, sentence-start form) of a situation in one voice."""
    text = template.format(**voice)
    return text, text[0].upper() + text[1:]


def emotional_exchange(r: Random, emotion: str) -> list[tuple[str, str]]:
    """One or two (user, assistant) exchanges in which the user feels ``emotion``."""
    if emotion not in SITUATIONS:
        raise SeedError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    strong = r.random() < 0.5
    situation = r.choice(SITUATIONS[emotion])
    sit, sit_start = _voice(situation, _USER_VOICE)
    you, you_start = _voice(situation, _YOUR_VOICE)
    user = r.choice(USER[emotion][strong]).format(sit=sit, Sit=sit_start)
    if r.random() < (0.7 if strong else 0.35):
        user += " " + EMOJI[emotion] * (2 if strong and r.random() < 0.3 else 1)
    reply = r.choice(REPLY[emotion][strong]).format(sit=you, Sit=you_start)
    exchanges = [(user, reply)]
    if r.random() < 0.3:
        exchanges.append(r.choice(_THANKS_GOOD if emotion in _POSITIVE else _THANKS_HARD))
    return exchanges
