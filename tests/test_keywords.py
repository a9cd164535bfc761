"""Labels that separate clusters: class-based TF-IDF (plain functions, no model, no Ray)."""
import numpy as np

from vidclust.descriptions.keywords import class_tfidf, dedupe_sentences, distinctive_keywords

# the case: nine topics, four of them (traffic scenes) sharing "city road, rush hour"
NINE_TOPICS = {
    "taxis": ["yellow taxis on a city road at rush hour", "taxis honk on a city road in rush hour",
              "a yellow taxi waits on the city road during rush hour"],
    "buses": ["a red bus on a city road at rush hour", "double decker buses on the city road, rush hour",
              "a bus stop on a city road during rush hour"],
    "cyclists": ["cyclists ride a bike lane on a city road at rush hour",
                 "a cyclist on a city road in rush hour traffic", "bikes pass cars on the city road at rush hour"],
    "pedestrians": ["pedestrians cross a city road at rush hour", "people walk on a crosswalk of a city road, rush hour",
                    "a crowd of pedestrians waits on the city road at rush hour"],
    "beach": ["waves roll onto a sandy beach", "surfers ride waves at the beach", "a calm beach at sunset"],
    "cooking": ["a chef chops onions in a kitchen", "cooking pasta in a pot", "frying eggs in a pan"],
    "soccer": ["players kick a soccer ball", "a goalkeeper saves a penalty", "a soccer match in a stadium"],
    "cats": ["a cat sleeps on a sofa", "a kitten plays with yarn", "a cat chases a mouse toy"],
    "mountains": ["snowy mountain peaks", "hikers climb a mountain trail", "a mountain lake at dawn"],
}


def test_class_tfidf_weighs_the_shared_phrase_low():
    words, weights, counts = class_tfidf(list(NINE_TOPICS.values()))
    j_road, j_taxi = words.index("city road"), words.index("taxi")
    assert counts[0, j_road] > 0 and weights[0, j_taxi] > weights[0, j_road]
    assert weights.shape == (9, len(words)) and np.all(weights >= 0)


def test_nine_topics_get_distinct_top_labels_without_a_model():
    labels = distinctive_keywords(list(NINE_TOPICS.values()), None, top_n=5)
    tops = [kws[0][0] for kws in labels]
    assert len(set(tops)) == 9, tops
    for topic, top in zip(list(NINE_TOPICS)[:4], tops[:4]):  # not the phrase the four share
        assert top not in ("city road", "rush hour", "city", "road", "rush", "hour"), (topic, top)


def test_same_captions_may_share_a_top_label_and_empty_clusters_get_none():
    same = ["a cat sleeps on a sofa", "a kitten plays"]
    labels = distinctive_keywords([same, list(reversed(same)), [], [None, " "], ["snowy mountain peaks"]])
    assert labels[0][0][0] == labels[1][0][0]
    assert labels[2] == [] and labels[3] == [] and labels[4][0][0] != labels[0][0][0]


def test_dedupe_sentences():
    assert dedupe_sentences("A dog runs. a dog  runs. It is sunny.") == "A dog runs. It is sunny."
    said = set()
    assert dedupe_sentences("A cat. A hat.", said) == "A cat. A hat."
    assert dedupe_sentences("A cat. A bat.", said) == "A bat."
    assert dedupe_sentences("A cat. A cat.", said) == "A cat."  # nothing new: itself, once
    assert dedupe_sentences(None) is None
