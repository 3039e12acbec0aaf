//! The search index's schema and documents: one document per ACTIVE product. Text fields use
//! an English stemming analyzer (`running` and `runs` both index as `run`); the category is a
//! tantivy facet (so a filter on `electronics` matches `electronics/audio/...`), attributes a
//! one-level facet of `name=value` pairs (filters and value counts), price and creation time
//! fast fields (range filter, sorting), and the stored product record hydrates the hits.

use tantivy::schema::{
    FAST, Facet, FacetOptions, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
};
use tantivy::{Index, TantivyDocument, Term};

use crate::model::ProductRecord;

/// The name the analyzer is registered under.
pub const ANALYZER: &str = "catalog_en";

/// The fields of the index.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// The sku, raw (deletes by term, tie-breaks sorts).
    pub sku: Field,
    pub title: Field,
    pub description: Field,
    /// The category path's words.
    pub category_text: Field,
    /// Attribute values' words.
    pub attribute_text: Field,
    /// Every word of the text fields, without frequencies: what typo-tolerant (fuzzy) terms
    /// are matched against besides the title, one automaton for all the other fields.
    pub fuzzy: Field,
    /// The category path as a facet.
    pub category: Field,
    /// `name=value` facets, one level.
    pub attributes: Field,
    pub price: Field,
    pub created: Field,
    /// The product record as stored, for hits.
    pub record: Field,
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
        sku: builder.add_text_field("sku", STRING | FAST),
        title: builder.add_text_field("title", text.clone()),
        description: builder.add_text_field("description", text.clone()),
        category_text: builder.add_text_field("category_text", text.clone()),
        attribute_text: builder.add_text_field("attribute_text", text),
        fuzzy: builder.add_text_field("fuzzy", words_only),
        category: builder.add_facet_field("category", FacetOptions::default()),
        attributes: builder.add_facet_field("attributes", FacetOptions::default()),
        price: builder.add_i64_field("price", INDEXED | FAST),
        created: builder.add_i64_field("created", FAST),
        record: builder.add_bytes_field("record", STORED),
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

/// Returns the facet of a category path.
pub fn category_facet(path: &str) -> Facet {
    Facet::from_path(path.split('/'))
}

/// Returns the one-level facet of an attribute value (`/color=black`).
pub fn attribute_facet(name: &str, value: &str) -> Facet {
    Facet::from_path([format!("{name}={value}")])
}

/// Returns the term that names a product's document.
pub fn sku_term(fields: &Fields, sku: &str) -> Term {
    Term::from_field_text(fields.sku, sku)
}

/// Returns the document of `product` with its stored `record` bytes.
pub fn document(fields: &Fields, product: &ProductRecord, record: &[u8]) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.sku, &product.sku);
    doc.add_text(fields.title, &product.title);
    doc.add_text(fields.description, &product.description);
    doc.add_text(fields.category_text, &product.category);
    for text in [&product.title, &product.description, &product.category] {
        doc.add_text(fields.fuzzy, text);
    }
    doc.add_facet(fields.category, category_facet(&product.category));
    for (name, value) in &product.attributes {
        doc.add_text(fields.attribute_text, value);
        doc.add_text(fields.fuzzy, value);
        doc.add_facet(fields.attributes, attribute_facet(name, value));
    }
    doc.add_i64(fields.price, product.price_minor);
    doc.add_i64(fields.created, product.create_time_ms);
    doc.add_bytes(fields.record, record);
    doc
}
