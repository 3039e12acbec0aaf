//! The search index's schema and documents: one document per title. Text fields use an
//! English stemming analyzer (`gardening` and `gardens` both index as `garden`); the ISBN is a
//! raw string (deletes by term, the order of a search without words); a `fuzzy` field holds
//! every word without frequencies, for typo-tolerant matches.

use tantivy::schema::{FAST, Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
};
use tantivy::{Index, TantivyDocument, Term};

use crate::model::TitleRecord;

/// The name the analyzer is registered under.
pub const ANALYZER: &str = "library_en";

/// The fields of the index.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// The ISBN-13, raw and stored: what a hit names.
    pub isbn: Field,
    pub title: Field,
    pub authors: Field,
    pub subjects: Field,
    /// Every word of the text fields, without frequencies (typo-tolerant matching).
    pub fuzzy: Field,
}

/// Returns the analyzer of every text field and of the query: words of letters and digits,
/// lower-cased, folded to ASCII and stemmed (English).
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Returns the schema and its fields.
pub fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let words_only = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::Basic),
    );
    let fields = Fields {
        isbn: builder.add_text_field("isbn", STRING | FAST | STORED),
        title: builder.add_text_field("title", text.clone()),
        authors: builder.add_text_field("authors", text.clone()),
        subjects: builder.add_text_field("subjects", text),
        fuzzy: builder.add_text_field("fuzzy", words_only),
    };
    (builder.build(), fields)
}

/// Returns a new in-memory index with the analyzer registered.
pub fn new_index() -> (Index, Fields) {
    let (schema, fields) = schema();
    let index = Index::create_in_ram(schema);
    index.tokenizers().register(ANALYZER, analyzer());
    (index, fields)
}

/// Returns the term that names a title's document.
pub fn isbn_term(fields: &Fields, isbn: &str) -> Term {
    Term::from_field_text(fields.isbn, isbn)
}

/// Returns the document of `title`.
pub fn document(fields: &Fields, title: &TitleRecord) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.isbn, &title.isbn);
    doc.add_text(fields.title, &title.title);
    doc.add_text(fields.fuzzy, &title.title);
    for author in &title.authors {
        doc.add_text(fields.authors, author);
        doc.add_text(fields.fuzzy, author);
    }
    for subject in &title.subjects {
        doc.add_text(fields.subjects, subject);
        doc.add_text(fields.fuzzy, subject);
    }
    doc
}

/// Returns a digest of what a title's document holds, so that a change of the title record
/// that leaves its text alone (a checkout, a hold) does not rewrite the document.
pub fn text_digest(title: &TitleRecord) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&title.title, &title.authors, &title.subjects).hash(&mut h);
    h.finish()
}
