//! The search index's schema and documents: one document per app. Text fields use an English
//! stemming analyzer; the package name is a raw string (deletes by term, the order of a search
//! without words); the category is a raw string (the filter); a `fuzzy` field holds every word
//! without frequencies, for typo-tolerant matches.

use sha2::{Digest, Sha256};
use tantivy::schema::{FAST, Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
};
use tantivy::{Index, TantivyDocument, Term};

use crate::model::AppRecord;

/// The name the analyzer is registered under.
pub const ANALYZER: &str = "appstore_en";

/// The fields of the index.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// The package name, raw and stored: what a hit names.
    pub package: Field,
    /// The category, raw (the filter).
    pub category: Field,
    pub title: Field,
    pub developer: Field,
    pub description: Field,
    /// Every word of the title and developer name, without frequencies (typo-tolerant matching).
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

/// Returns a new in-memory index with the analyzer registered, and its fields.
pub fn new_index() -> (Index, Fields) {
    let mut builder = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let words_only = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::Basic),
    );
    let fields = Fields {
        package: builder.add_text_field("package", STRING | FAST | STORED),
        category: builder.add_text_field("category", STRING),
        title: builder.add_text_field("title", text.clone()),
        developer: builder.add_text_field("developer", text.clone()),
        description: builder.add_text_field("description", text),
        fuzzy: builder.add_text_field("fuzzy", words_only),
    };
    let index = Index::create_in_ram(builder.build());
    index.tokenizers().register(ANALYZER, analyzer());
    (index, fields)
}

/// Returns the term that names an app's document.
pub fn package_term(fields: &Fields, package: &str) -> Term {
    Term::from_field_text(fields.package, package)
}

/// Returns the document of `app`.
pub fn document(fields: &Fields, app: &AppRecord) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.package, &app.package_name);
    doc.add_text(fields.category, &app.category);
    doc.add_text(fields.title, &app.title);
    doc.add_text(fields.developer, &app.developer_name);
    doc.add_text(fields.description, &app.description);
    doc.add_text(fields.fuzzy, &app.title);
    doc.add_text(fields.fuzzy, &app.developer_name);
    doc
}

/// Returns a digest of what an app's document holds, so that a change of the app record that
/// leaves its text alone (a release, a rollout) does not rewrite the document.
pub fn text_digest(app: &AppRecord) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [&app.title, &app.developer_name, &app.description, &app.category] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}
