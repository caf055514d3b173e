"""Sentence templates and slot fillers for the semantic events of the speech-events benchmark.

Each event type of :data:`genir.data.speech_events.SPEECH_TASKS` has at least four templates; slots in braces are
filled from :data:`FILLERS`, so the transcripts of one type differ in names, places, objects and numbers while the
event stays the same. Numbers are words (what the voice says is what the transcript holds). Our own sentences in
the style of ACE05 news text, not ACE05 itself (the paper's Speech-ACE05 speaks the licensed corpus).
"""

from __future__ import annotations

import random
import re

FILLERS: dict[str, tuple[str, ...]] = {
    "person": ("Maria Lopez", "John Carter", "Ahmed Khan", "Sarah Miller", "Li Wei", "Peter Novak", "Anna Berg",
               "David Owens", "Grace Kim", "Samuel Reed", "Elena Rossi", "Omar Haddad", "Laura Chen",
               "Victor Hugo Silva", "Nina Patel", "Thomas Brown"),
    "place": ("Boston", "the capital", "Madrid", "the northern province", "Cairo", "the harbour district",
              "Lagos", "the old town", "Denver", "the border region", "Oslo", "the city centre", "Manila",
              "the valley", "Toronto", "the coastal town"),
    "group": ("rebel fighters", "armed men", "the militia", "government troops", "unknown gunmen",
              "the insurgents", "soldiers", "a group of attackers"),
    "crowd": ("thousands of students", "hundreds of workers", "angry farmers", "local residents",
              "the teachers union", "opposition supporters", "nurses", "taxi drivers"),
    "target": ("a police station", "the army base", "a convoy", "the airport", "a checkpoint", "the town hall",
               "a bridge", "the radio station"),
    "weapon": ("rockets", "mortars", "a car bomb", "rifles", "grenades", "artillery"),
    "number": ("two", "three", "five", "seven", "ten", "twelve", "fifteen", "twenty", "forty", "one hundred"),
    "vehicle": ("trucks", "buses", "a cargo plane", "helicopters", "a ferry", "a train", "boats"),
    "company": ("Northwind Energy", "Atlas Bank", "Blue River Foods", "Keystone Motors", "Orion Telecom",
                "Summit Airlines", "Greenfield Media", "Harbor Steel"),
    "amount": ("two million dollars", "five hundred thousand euros", "ten million dollars",
               "three billion yen", "eighty thousand pounds", "one million dollars"),
    "asset": ("a stake in the airline", "the factory", "its shipping unit", "the newspaper", "a hotel chain",
              "the football club", "farmland", "the software division"),
    "official": ("the prime minister", "the foreign minister", "the president", "the ambassador",
                 "the mayor", "the defence secretary", "the trade envoy", "the governor"),
    "crime": ("fraud", "murder", "bribery", "tax evasion", "smuggling", "robbery", "money laundering"),
    "court": ("the high court", "a federal judge", "the supreme court", "a district court", "the tribunal"),
    "years": ("two years", "five years", "ten years", "six months", "life", "eighteen months"),
    "position": ("chief executive", "finance minister", "head coach", "party leader", "director", "chairman",
                 "ambassador", "police chief"),
    "organization": ("the central bank", "the ministry", "the university", "the national team", "the council",
                     "the hospital", "the party", "the agency"),
    "month": ("January", "March", "May", "July", "September", "November", "last week", "on Monday"),
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "conflict:attack": (
        "{group} attacked {target} in {place} with {weapon}.",
        "{number} people were killed when {group} fired {weapon} at {target}.",
        "Witnesses said {group} stormed {target} near {place} {month}.",
        "The army said {group} launched an assault on {target} in {place}.",
        "{weapon} hit {target} as fighting broke out in {place}.",
    ),
    "conflict:demonstrate": (
        "{crowd} marched through {place} to protest against the new law.",
        "{crowd} gathered outside the parliament in {place} {month}.",
        "Police watched as {crowd} rallied in {place} demanding higher wages.",
        "{crowd} staged a sit in at the town square of {place}.",
        "Protesters led by {person} blocked the main road in {place}.",
    ),
    "conflict:surrender": (
        "{group} laid down their weapons and surrendered in {place}.",
        "{number} fighters gave themselves up to the army near {place}.",
        "The commander {person} surrendered to government forces {month}.",
        "After a long siege {group} in {place} agreed to surrender.",
    ),
    "movement:transport": (
        "{vehicle} carried food and medicine from {place} to the camps.",
        "The army moved {number} tanks by {vehicle} to {place}.",
        "{person} travelled from {place} to the summit {month}.",
        "Aid workers shipped supplies to {place} on {vehicle}.",
        "{number} refugees were taken by {vehicle} to {place}.",
    ),
    "movement:evacuate": (
        "Officials evacuated {number} thousand residents from {place} before the storm.",
        "Families were evacuated from {place} as the fire spread.",
        "The embassy evacuated its staff from {place} {month}.",
        "Rescue teams moved patients out of the hospital in {place}.",
    ),
    "movement:escape": (
        "{number} prisoners escaped from the jail in {place}.",
        "{person} fled the country and crossed the border to {place}.",
        "The suspect escaped from police custody near {place} {month}.",
        "Villagers ran from {place} when {group} arrived.",
    ),
    "transaction:transfer-money": (
        "{company} paid {amount} to settle the claim.",
        "The government sent {amount} in aid to {place}.",
        "{person} wired {amount} to an account in {place}.",
        "The bank lent {amount} to {company} {month}.",
        "Investors poured {amount} into {company}.",
    ),
    "transaction:transfer-ownership": (
        "{company} bought {asset} for {amount}.",
        "{company} sold {asset} to a rival {month}.",
        "{person} acquired {asset} from {company}.",
        "The state took over {asset} owned by {company}.",
    ),
    "transaction:donate": (
        "{person} donated {amount} to the hospital in {place}.",
        "{company} gave {amount} to flood victims in {place}.",
        "A charity donated {number} tons of rice to {place}.",
        "{person} gave {asset} to the city as a gift.",
    ),
    "contact:meet": (
        "{official} met {person} in {place} {month}.",
        "{person} held talks with {official} at the embassy in {place}.",
        "The two leaders met for the first time in {place}.",
        "{official} and {person} had lunch together in {place}.",
        "Delegates from {number} countries gathered in {place} for the summit.",
    ),
    "contact:phone-write": (
        "{official} phoned {person} to discuss the crisis.",
        "{person} wrote a letter to {official} {month}.",
        "{official} called the leader of {place} on Tuesday night.",
        "{person} sent an email to the board of {company}.",
    ),
    "contact:negotiate": (
        "{official} negotiated a ceasefire with {group} in {place}.",
        "Talks between {company} and the unions continued in {place}.",
        "{person} bargained with {official} over the trade deal.",
        "Envoys from {number} nations negotiated the treaty in {place}.",
    ),
    "justice:arrest-jail": (
        "Police arrested {person} in {place} on suspicion of {crime}.",
        "{number} men were detained in {place} after the raid.",
        "{person} was jailed {month} for {crime}.",
        "Officers took {person} into custody at the airport in {place}.",
        "Authorities in {place} arrested the chief of {company}.",
    ),
    "justice:trial-hearing": (
        "The trial of {person} for {crime} opened in {court}.",
        "{court} heard evidence against {person} {month}.",
        "{person} appeared before {court} charged with {crime}.",
        "Lawyers for {person} presented their case to {court}.",
    ),
    "justice:sentence": (
        "{court} sentenced {person} to {years} in prison for {crime}.",
        "{person} was given {years} for {crime}.",
        "The judge handed {person} a sentence of {years}.",
        "{number} officials were sentenced to {years} for {crime}.",
    ),
    "justice:sue": (
        "{person} sued {company} for {amount}.",
        "{company} filed a lawsuit against {company} in {court}.",
        "Residents of {place} took {company} to court over the pollution.",
        "{person} brought a case against the city of {place}.",
    ),
    "personnel:start-position": (
        "{person} was hired as the new {position} of {organization}.",
        "{person} took over as {position} {month}.",
        "{organization} appointed {person} as {position}.",
        "{person} joined {company} as {position}.",
    ),
    "personnel:end-position": (
        "{person} resigned as {position} of {organization}.",
        "{company} fired its {position} {person} {month}.",
        "{person} stepped down as {position} after {number} years.",
        "{person} retired from {organization} {month}.",
    ),
    "personnel:elect": (
        "Voters in {place} elected {person} as mayor.",
        "{person} won the election in {place} {month}.",
        "{person} was elected {position} by the members of {organization}.",
        "The parliament elected {person} as its speaker.",
    ),
    "personnel:nominate": (
        "The president nominated {person} as {position}.",
        "{organization} named {person} as its candidate for {position}.",
        "{person} was nominated for the post of {position} {month}.",
        "{official} put forward {person} to lead {organization}.",
    ),
    "life:be-born": (
        "{person} was born in {place} in a small farming family.",
        "The queen gave birth to a baby girl in {place}.",
        "A baby boy was born to {person} {month}.",
        "{person} and her husband welcomed twins born in {place}.",
    ),
    "life:marry": (
        "{person} married {person} in {place} {month}.",
        "The couple got married in a small church in {place}.",
        "{person} wed her long time partner in {place}.",
        "{person} and {person} were married at the town hall.",
    ),
    "life:injure": (
        "{number} people were injured when {vehicle} crashed in {place}.",
        "{person} was badly hurt in the explosion in {place}.",
        "Doctors treated {number} wounded soldiers near {place}.",
        "A bomb wounded {number} shoppers at the market in {place}.",
    ),
    "life:die": (
        "{person} died in hospital in {place} {month}.",
        "{number} people were killed in the earthquake in {place}.",
        "The former {position} {person} has died at the age of {number}.",
        "{number} miners lost their lives in the flood at {place}.",
    ),
}

_SLOT = re.compile(r"\{(\w+)\}")


def make_sentence(event_type: str, rng: random.Random) -> str:
    """One sentence of ``event_type``: a random template with each slot drawn from its fillers (the first
    letter upper-cased)."""
    template = rng.choice(TEMPLATES[event_type])
    text = _SLOT.sub(lambda m: rng.choice(FILLERS[m.group(1)]), template)
    return text[0].upper() + text[1:]
