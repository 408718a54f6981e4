

def test_content_free_documents_keep_each_ones_length_and_say_nothing_of_it():
    from evalkit.prompt.documents import content_free_documents
    from evalkit.tasks.documents import Document

    docs = [Document("Ned Kelly", "Ned Kelly was an Australian bushranger, outlaw and gang leader."),
            Document("", "Short."), Document("A title", "x" * 300)]
    blank = content_free_documents(docs, "nothing to see here")
    assert len(blank) == 3 and blank[1].title == "" and blank[0].title
    for doc, free in zip(docs, blank):
        assert len(doc.text) <= len(free.text) < len(doc.text) + len(" nothing") and set(free.text.split()) <= {
            "nothing", "to", "see", "here"}


def test_content_free_documents_match_token_lengths_when_given_a_tokenizer(smollm2_tokenizer):
    from evalkit.prompt.documents import content_free_documents
    from evalkit.tasks.documents import Document

    count = lambda text: len(smollm2_tokenizer(text, add_special_tokens=False)["input_ids"])
    doc = Document("Ned Kelly", "Edward Kelly (December 1854 - 11 November 1880) was an Australian bushranger.")
    (free,) = content_free_documents([doc], "This passage is left blank on purpose.", count)
    assert count(free.text) - count(doc.text) in (0, 1, 2) and count(free.title) >= count(doc.title)
