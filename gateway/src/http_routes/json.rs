//! Requests and answers as JSON (the proto3 JSON mapping, through `prost-reflect`): request
//! messages from a JSON body plus path and query parameters, answers and `google.rpc.Status`
//! errors as JSON, and the gRPC code -> HTTP status table of grpc-gateway.

use prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions, Value};
use serde_json::{Map, Value as Json};
use tonic::Code;

/// Where a binding's request body goes.
#[derive(Debug, Clone)]
pub enum BodySpec {
    /// No body (`GET`, `DELETE` without `body`): every field comes from the path and the query.
    None,
    /// `body: "*"`: the body is the whole request message; no query parameters.
    All,
    /// `body: "field"`: the body is that top-level field.
    Field(FieldDescriptor),
}

/// Resolves a field path (`["link", "code"]`, proto or JSON names) in `desc`: every field but
/// the last must be a singular message.
pub fn field_path(desc: &MessageDescriptor, path: &[String]) -> Result<Vec<FieldDescriptor>, String> {
    let mut current = desc.clone();
    let mut fields = Vec::with_capacity(path.len());
    for (i, name) in path.iter().enumerate() {
        let Some(field) = current.get_field_by_name(name).or_else(|| current.get_field_by_json_name(name)) else {
            return Err(format!("{} has no field \"{name}\"", current.full_name()));
        };
        if i + 1 < path.len() {
            match field.kind() {
                Kind::Message(next) if !field.is_list() && !field.is_map() => current = next,
                _ => return Err(format!("{}.{name} is not a message field", current.full_name())),
            }
        }
        fields.push(field);
    }
    Ok(fields)
}

/// Renders a field path for messages (`link.code`).
pub fn path_name(path: &[FieldDescriptor]) -> String {
    path.iter().map(FieldDescriptor::name).collect::<Vec<_>>().join(".")
}

/// The JSON value that the proto3 JSON mapping reads for `text` in `field`: a boolean for bool
/// fields, a string for everything else (numbers, enums by name, base64 bytes and well-known
/// types such as Timestamp all read from strings).
fn text_to_json(field: &FieldDescriptor, text: &str) -> Result<Json, String> {
    match field.kind() {
        Kind::Bool => match text {
            "true" => Ok(Json::Bool(true)),
            "false" => Ok(Json::Bool(false)),
            _ => Err(format!("{}: \"{text}\" is not true or false", field.name())),
        },
        _ => Ok(Json::String(text.to_string())),
    }
}

/// Builds a message of type `desc` from text parameters (path variables, query parameters,
/// header fields): each names a field path and its values (several only for repeated fields).
pub fn message_from_params(
    desc: &MessageDescriptor,
    params: &[(Vec<FieldDescriptor>, Vec<String>)],
) -> Result<DynamicMessage, String> {
    let mut root = Map::new();
    for (path, values) in params {
        let Some((leaf, parents)) = path.split_last() else { continue };
        let mut object = &mut root;
        for parent in parents {
            let entry = object.entry(parent.name().to_string()).or_insert_with(|| Json::Object(Map::new()));
            let Json::Object(next) = entry else {
                return Err(format!("{} is set both as a value and as a message", parent.name()));
            };
            object = next;
        }
        if leaf.is_map() {
            return Err(format!("{}: map fields cannot be set from the URL", path_name(path)));
        }
        let value = if leaf.is_list() {
            Json::Array(values.iter().map(|v| text_to_json(leaf, v)).collect::<Result<_, _>>()?)
        } else {
            match values.as_slice() {
                [one] => text_to_json(leaf, one)?,
                _ => return Err(format!("{} is not repeated but given {} times", path_name(path), values.len())),
            }
        };
        if object.insert(leaf.name().to_string(), value).is_some() {
            return Err(format!("{} is given twice", path_name(path)));
        }
    }
    DynamicMessage::deserialize(desc.clone(), Json::Object(root)).map_err(|e| e.to_string())
}

/// Builds the request message from a JSON body (`spec` says where it goes) and merges
/// `params` (already a message of the same type) over it.
pub fn request_message(
    desc: &MessageDescriptor,
    spec: &BodySpec,
    body: &[u8],
    params: DynamicMessage,
) -> Result<DynamicMessage, String> {
    let blank = body.iter().all(u8::is_ascii_whitespace);
    let mut message = match spec {
        BodySpec::None => DynamicMessage::new(desc.clone()),
        BodySpec::All | BodySpec::Field(_) if blank => DynamicMessage::new(desc.clone()),
        BodySpec::All => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let message =
                DynamicMessage::deserialize(desc.clone(), &mut de).map_err(|e| format!("request body: {e}"))?;
            de.end().map_err(|e| format!("request body: {e}"))?;
            message
        }
        BodySpec::Field(field) => {
            let value: Json = serde_json::from_slice(body).map_err(|e| format!("request body: {e}"))?;
            let mut wrapper = Map::new();
            wrapper.insert(field.name().to_string(), value);
            DynamicMessage::deserialize(desc.clone(), Json::Object(wrapper))
                .map_err(|e| format!("request body ({}): {e}", field.name()))?
        }
    };
    message.merge(params.encode_to_vec().as_slice()).map_err(|e| format!("request parameters: {e}"))?;
    Ok(message)
}

/// JSON output settings.
#[derive(Debug, Clone)]
pub struct JsonOptions {
    /// Writes fields holding default values.
    pub emit_defaults: bool,
    /// Uses `.proto` names instead of lowerCamelCase.
    pub proto_field_names: bool,
}

impl JsonOptions {
    fn serialize_options(&self) -> SerializeOptions {
        SerializeOptions::new()
            .skip_default_fields(!self.emit_defaults)
            .use_proto_field_name(self.proto_field_names)
            .stringify_64_bit_integers(true)
    }
}

/// Renders an answer as JSON: the whole message, or only `response_body` (a top-level field).
pub fn answer_json(
    desc: &MessageDescriptor,
    encoded: &[u8],
    response_body: Option<&FieldDescriptor>,
    options: &JsonOptions,
) -> Result<Vec<u8>, String> {
    let message = DynamicMessage::decode(desc.clone(), encoded).map_err(|e| format!("answer does not decode: {e}"))?;
    let serialize_options = options.serialize_options();
    let Some(field) = response_body else {
        let mut out = serde_json::Serializer::new(Vec::with_capacity(encoded.len() * 2 + 2));
        message.serialize_with_options(&mut out, &serialize_options).map_err(|e| e.to_string())?;
        return Ok(out.into_inner());
    };
    let whole =
        message.serialize_with_options(serde_json::value::Serializer, &serialize_options.skip_default_fields(false));
    let whole = whole.map_err(|e| e.to_string())?;
    let key = if options.proto_field_names { field.name() } else { field.json_name() };
    let part = whole.get(key).cloned().unwrap_or(Json::Null);
    serde_json::to_vec(&part).map_err(|e| e.to_string())
}

/// Reads a string field (by path) of an encoded answer: the redirect's location.
pub fn string_field(desc: &MessageDescriptor, encoded: &[u8], path: &[FieldDescriptor]) -> Option<String> {
    let message = DynamicMessage::decode(desc.clone(), encoded).ok()?;
    let (leaf, parents) = path.split_last()?;
    let mut current = message;
    for parent in parents {
        let Value::Message(next) = current.get_field(parent).into_owned() else { return None };
        current = next;
    }
    match current.get_field(leaf).as_ref() {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The HTTP status grpc-gateway answers for a gRPC code (`runtime.HTTPStatusFromCode`).
pub fn http_status_for_code(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::Unauthenticated => 401,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
    }
}

/// Parses a gRPC code by its name (`NOT_FOUND`) or number (`5`).
pub fn parse_code(text: &str) -> Option<Code> {
    if let Ok(n) = text.parse::<i32>() {
        return (0..=16).contains(&n).then(|| Code::from_i32(n));
    }
    let code = match text {
        "OK" => Code::Ok,
        "CANCELLED" => Code::Cancelled,
        "UNKNOWN" => Code::Unknown,
        "INVALID_ARGUMENT" => Code::InvalidArgument,
        "DEADLINE_EXCEEDED" => Code::DeadlineExceeded,
        "NOT_FOUND" => Code::NotFound,
        "ALREADY_EXISTS" => Code::AlreadyExists,
        "PERMISSION_DENIED" => Code::PermissionDenied,
        "RESOURCE_EXHAUSTED" => Code::ResourceExhausted,
        "FAILED_PRECONDITION" => Code::FailedPrecondition,
        "ABORTED" => Code::Aborted,
        "OUT_OF_RANGE" => Code::OutOfRange,
        "UNIMPLEMENTED" => Code::Unimplemented,
        "INTERNAL" => Code::Internal,
        "UNAVAILABLE" => Code::Unavailable,
        "DATA_LOSS" => Code::DataLoss,
        "UNAUTHENTICATED" => Code::Unauthenticated,
        _ => return None,
    };
    Some(code)
}

/// `google.rpc.Status` as far as the gateway reads it from `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// The JSON error body of grpc-gateway: `{"code": N, "message": "...", "details": [...]}`.
/// Details come from the status's `grpc-status-details-bin`: each `Any` as JSON with its
/// `@type` when `pool` describes the type, else with its bytes in base64 under `value`.
pub fn status_json(status: &tonic::Status, pool: Option<&prost_reflect::DescriptorPool>) -> Vec<u8> {
    let mut details = Vec::new();
    if !status.details().is_empty()
        && let Ok(rpc) = RpcStatus::decode(status.details())
    {
        for any in rpc.details {
            details.push(any_json(&any, pool));
        }
    }
    // A struct, not a map, keeps grpc-gateway's field order.
    #[derive(serde::Serialize)]
    struct Body<'a> {
        code: i32,
        message: &'a str,
        details: Vec<Json>,
    }
    let body = Body { code: status.code() as i32, message: status.message(), details };
    serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"code\":13,\"message\":\"\",\"details\":[]}".to_vec())
}

fn any_json(any: &prost_types::Any, pool: Option<&prost_reflect::DescriptorPool>) -> Json {
    let type_name = any.type_url.rsplit('/').next().unwrap_or("");
    let decoded = pool
        .and_then(|p| p.get_message_by_name(type_name))
        .and_then(|desc| DynamicMessage::decode(desc, any.value.as_slice()).ok())
        .and_then(|m| serde_json::to_value(&m).ok());
    let mut object = match decoded {
        Some(Json::Object(map)) => map,
        _ => {
            use base64::Engine as _;
            let mut map = Map::new();
            map.insert("value".into(), Json::String(base64::engine::general_purpose::STANDARD.encode(&any.value)));
            map
        }
    };
    object.insert("@type".into(), Json::String(any.type_url.clone()));
    Json::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_gateway_status_mapping() {
        assert_eq!(http_status_for_code(Code::NotFound), 404);
        assert_eq!(http_status_for_code(Code::InvalidArgument), 400);
        assert_eq!(http_status_for_code(Code::Unauthenticated), 401);
        assert_eq!(http_status_for_code(Code::PermissionDenied), 403);
        assert_eq!(http_status_for_code(Code::AlreadyExists), 409);
        assert_eq!(http_status_for_code(Code::ResourceExhausted), 429);
        assert_eq!(http_status_for_code(Code::Unavailable), 503);
        assert_eq!(http_status_for_code(Code::DeadlineExceeded), 504);
        assert_eq!(http_status_for_code(Code::Unimplemented), 501);
    }

    #[test]
    fn codes_parse_by_name_and_number() {
        assert_eq!(parse_code("NOT_FOUND"), Some(Code::NotFound));
        assert_eq!(parse_code("5"), Some(Code::NotFound));
        assert_eq!(parse_code("17"), None);
        assert_eq!(parse_code("not_found"), None);
    }

    #[test]
    fn status_details_render_as_json() {
        let pool = prost_reflect::DescriptorPool::decode(meshwork_proto::FILE_DESCRIPTOR_SET).unwrap();
        let link = meshwork_proto::pb::urlshortener::v1::Link { code: "abc".into(), ..Default::default() };
        let details = RpcStatus {
            code: 5,
            message: "gone".into(),
            details: vec![
                prost_types::Any {
                    type_url: "type.googleapis.com/meshwork.urlshortener.v1.Link".into(),
                    value: link.encode_to_vec(),
                },
                prost_types::Any { type_url: "type.googleapis.com/x.Unknown".into(), value: vec![1, 2] },
            ],
        };
        let status = tonic::Status::with_details(Code::NotFound, "gone", details.encode_to_vec().into());
        let json: Json = serde_json::from_slice(&status_json(&status, Some(&pool))).unwrap();
        assert_eq!(json["details"][0]["@type"], "type.googleapis.com/meshwork.urlshortener.v1.Link");
        assert_eq!(json["details"][0]["code"], "abc");
        assert_eq!(json["details"][1], serde_json::json!({"@type": "type.googleapis.com/x.Unknown", "value": "AQI="}));
    }

    #[test]
    fn answers_and_request_messages() {
        let pool = prost_reflect::DescriptorPool::decode(meshwork_proto::FILE_DESCRIPTOR_SET).unwrap();
        let input = pool.get_message_by_name("meshwork.urlshortener.v1.GetStatsRequest").unwrap();
        let code = field_path(&input, &["code".to_string()]).unwrap();
        let days = field_path(&input, &["days".to_string()]).unwrap();
        let params = message_from_params(&input, &[(code, vec!["abc".into()]), (days, vec!["7".into()])]).unwrap();
        let message = request_message(&input, &BodySpec::None, b"", params).unwrap();
        let decoded = meshwork_proto::pb::urlshortener::v1::GetStatsRequest::decode(
            prost::Message::encode_to_vec(&message).as_slice(),
        )
        .unwrap();
        assert_eq!((decoded.code.as_str(), decoded.days), ("abc", 7));
        assert!(field_path(&input, &["nope".to_string()]).unwrap_err().contains("no field \"nope\""));
        let twice = field_path(&input, &["days".to_string()]).unwrap();
        assert!(message_from_params(&input, &[(twice, vec!["1".into(), "2".into()])]).unwrap_err().contains("2 times"));

        let output = pool.get_message_by_name("meshwork.urlshortener.v1.ResolveResponse").unwrap();
        let answer =
            meshwork_proto::pb::urlshortener::v1::ResolveResponse { long_url: "https://e.x".into(), link: None };
        let options = JsonOptions { emit_defaults: false, proto_field_names: true };
        let json = answer_json(&output, &answer.encode_to_vec(), None, &options).unwrap();
        assert_eq!(String::from_utf8(json).unwrap(), r#"{"long_url":"https://e.x"}"#);
        let long_url = output.get_field_by_name("long_url").unwrap();
        let json = answer_json(&output, &answer.encode_to_vec(), Some(&long_url), &options).unwrap();
        assert_eq!(String::from_utf8(json).unwrap(), r#""https://e.x""#);
        assert!(answer_json(&output, &[0xff, 0xff], None, &options).is_err());
    }

    #[test]
    fn status_json_shape() {
        let body = status_json(&tonic::Status::not_found("no such code"), None);
        assert_eq!(String::from_utf8_lossy(&body), r#"{"code":5,"message":"no such code","details":[]}"#);
        let json: Json = serde_json::from_slice(&body).unwrap();
        assert_eq!(json, serde_json::json!({"code": 5, "message": "no such code", "details": []}));
    }
}
