import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LocationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCATION_TYPE_UNSPECIFIED: _ClassVar[LocationType]
    LOCATION_TYPE_RECEIVING: _ClassVar[LocationType]
    LOCATION_TYPE_STORAGE: _ClassVar[LocationType]
    LOCATION_TYPE_PACKING: _ClassVar[LocationType]
    LOCATION_TYPE_SHIPPING: _ClassVar[LocationType]
    LOCATION_TYPE_LOSS: _ClassVar[LocationType]

class PurchaseOrderState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PURCHASE_ORDER_STATE_UNSPECIFIED: _ClassVar[PurchaseOrderState]
    PURCHASE_ORDER_STATE_OPEN: _ClassVar[PurchaseOrderState]
    PURCHASE_ORDER_STATE_PARTIALLY_RECEIVED: _ClassVar[PurchaseOrderState]
    PURCHASE_ORDER_STATE_RECEIVED: _ClassVar[PurchaseOrderState]

class FulfillmentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FULFILLMENT_STATE_UNSPECIFIED: _ClassVar[FulfillmentState]
    FULFILLMENT_STATE_WAITING: _ClassVar[FulfillmentState]
    FULFILLMENT_STATE_PICKING: _ClassVar[FulfillmentState]
    FULFILLMENT_STATE_PICKED: _ClassVar[FulfillmentState]
    FULFILLMENT_STATE_PACKED: _ClassVar[FulfillmentState]
    FULFILLMENT_STATE_SHIPPED: _ClassVar[FulfillmentState]
    FULFILLMENT_STATE_CANCELLED: _ClassVar[FulfillmentState]

class AbcClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ABC_CLASS_UNSPECIFIED: _ClassVar[AbcClass]
    ABC_CLASS_A: _ClassVar[AbcClass]
    ABC_CLASS_B: _ClassVar[AbcClass]
    ABC_CLASS_C: _ClassVar[AbcClass]

class AuditKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_KIND_UNSPECIFIED: _ClassVar[AuditKind]
    AUDIT_KIND_RECEIVED: _ClassVar[AuditKind]
    AUDIT_KIND_PUT_AWAY: _ClassVar[AuditKind]
    AUDIT_KIND_MOVED: _ClassVar[AuditKind]
    AUDIT_KIND_PICKED: _ClassVar[AuditKind]
    AUDIT_KIND_SHORT_PICK: _ClassVar[AuditKind]
    AUDIT_KIND_SHIPPED: _ClassVar[AuditKind]
    AUDIT_KIND_COUNTED: _ClassVar[AuditKind]
LOCATION_TYPE_UNSPECIFIED: LocationType
LOCATION_TYPE_RECEIVING: LocationType
LOCATION_TYPE_STORAGE: LocationType
LOCATION_TYPE_PACKING: LocationType
LOCATION_TYPE_SHIPPING: LocationType
LOCATION_TYPE_LOSS: LocationType
PURCHASE_ORDER_STATE_UNSPECIFIED: PurchaseOrderState
PURCHASE_ORDER_STATE_OPEN: PurchaseOrderState
PURCHASE_ORDER_STATE_PARTIALLY_RECEIVED: PurchaseOrderState
PURCHASE_ORDER_STATE_RECEIVED: PurchaseOrderState
FULFILLMENT_STATE_UNSPECIFIED: FulfillmentState
FULFILLMENT_STATE_WAITING: FulfillmentState
FULFILLMENT_STATE_PICKING: FulfillmentState
FULFILLMENT_STATE_PICKED: FulfillmentState
FULFILLMENT_STATE_PACKED: FulfillmentState
FULFILLMENT_STATE_SHIPPED: FulfillmentState
FULFILLMENT_STATE_CANCELLED: FulfillmentState
ABC_CLASS_UNSPECIFIED: AbcClass
ABC_CLASS_A: AbcClass
ABC_CLASS_B: AbcClass
ABC_CLASS_C: AbcClass
AUDIT_KIND_UNSPECIFIED: AuditKind
AUDIT_KIND_RECEIVED: AuditKind
AUDIT_KIND_PUT_AWAY: AuditKind
AUDIT_KIND_MOVED: AuditKind
AUDIT_KIND_PICKED: AuditKind
AUDIT_KIND_SHORT_PICK: AuditKind
AUDIT_KIND_SHIPPED: AuditKind
AUDIT_KIND_COUNTED: AuditKind

class Facility(_message.Message):
    __slots__ = ("warehouse_id", "name", "inventory_location", "aisles", "aisle_length_dm", "aisle_spacing_dm", "rack_pitch_dm", "over_receipt_percent", "create_time")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_LOCATION_FIELD_NUMBER: _ClassVar[int]
    AISLES_FIELD_NUMBER: _ClassVar[int]
    AISLE_LENGTH_DM_FIELD_NUMBER: _ClassVar[int]
    AISLE_SPACING_DM_FIELD_NUMBER: _ClassVar[int]
    RACK_PITCH_DM_FIELD_NUMBER: _ClassVar[int]
    OVER_RECEIPT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    name: str
    inventory_location: str
    aisles: int
    aisle_length_dm: int
    aisle_spacing_dm: int
    rack_pitch_dm: int
    over_receipt_percent: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, warehouse_id: _Optional[str] = ..., name: _Optional[str] = ..., inventory_location: _Optional[str] = ..., aisles: _Optional[int] = ..., aisle_length_dm: _Optional[int] = ..., aisle_spacing_dm: _Optional[int] = ..., rack_pitch_dm: _Optional[int] = ..., over_receipt_percent: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StockItem(_message.Message):
    __slots__ = ("sku", "lot", "quantity", "expire_time")
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    sku: str
    lot: str
    quantity: int
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, sku: _Optional[str] = ..., lot: _Optional[str] = ..., quantity: _Optional[int] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Location(_message.Message):
    __slots__ = ("warehouse_id", "code", "type", "capacity", "used", "aisle", "position_dm", "items")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    AISLE_FIELD_NUMBER: _ClassVar[int]
    POSITION_DM_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    code: str
    type: LocationType
    capacity: int
    used: int
    aisle: int
    position_dm: int
    items: _containers.RepeatedCompositeFieldContainer[StockItem]
    def __init__(self, warehouse_id: _Optional[str] = ..., code: _Optional[str] = ..., type: _Optional[_Union[LocationType, str]] = ..., capacity: _Optional[int] = ..., used: _Optional[int] = ..., aisle: _Optional[int] = ..., position_dm: _Optional[int] = ..., items: _Optional[_Iterable[_Union[StockItem, _Mapping]]] = ...) -> None: ...

class CreateWarehouseRequest(_message.Message):
    __slots__ = ("request_id", "warehouse")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    warehouse: Facility
    def __init__(self, request_id: _Optional[str] = ..., warehouse: _Optional[_Union[Facility, _Mapping]] = ...) -> None: ...

class CreateWarehouseResponse(_message.Message):
    __slots__ = ("warehouse",)
    WAREHOUSE_FIELD_NUMBER: _ClassVar[int]
    warehouse: Facility
    def __init__(self, warehouse: _Optional[_Union[Facility, _Mapping]] = ...) -> None: ...

class GetWarehouseRequest(_message.Message):
    __slots__ = ("warehouse_id",)
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    def __init__(self, warehouse_id: _Optional[str] = ...) -> None: ...

class GetWarehouseResponse(_message.Message):
    __slots__ = ("warehouse",)
    WAREHOUSE_FIELD_NUMBER: _ClassVar[int]
    warehouse: Facility
    def __init__(self, warehouse: _Optional[_Union[Facility, _Mapping]] = ...) -> None: ...

class NewLocation(_message.Message):
    __slots__ = ("code", "capacity")
    CODE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    code: str
    capacity: int
    def __init__(self, code: _Optional[str] = ..., capacity: _Optional[int] = ...) -> None: ...

class CreateLocationsRequest(_message.Message):
    __slots__ = ("request_id", "warehouse_id", "locations")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    warehouse_id: str
    locations: _containers.RepeatedCompositeFieldContainer[NewLocation]
    def __init__(self, request_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., locations: _Optional[_Iterable[_Union[NewLocation, _Mapping]]] = ...) -> None: ...

class CreateLocationsResponse(_message.Message):
    __slots__ = ("locations",)
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    locations: _containers.RepeatedCompositeFieldContainer[Location]
    def __init__(self, locations: _Optional[_Iterable[_Union[Location, _Mapping]]] = ...) -> None: ...

class GetLocationRequest(_message.Message):
    __slots__ = ("warehouse_id", "code")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    code: str
    def __init__(self, warehouse_id: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class GetLocationResponse(_message.Message):
    __slots__ = ("location",)
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    location: Location
    def __init__(self, location: _Optional[_Union[Location, _Mapping]] = ...) -> None: ...

class ListLocationsRequest(_message.Message):
    __slots__ = ("warehouse_id", "page_size", "page_token")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    page_size: int
    page_token: str
    def __init__(self, warehouse_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLocationsResponse(_message.Message):
    __slots__ = ("locations", "next_page_token")
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    locations: _containers.RepeatedCompositeFieldContainer[Location]
    next_page_token: str
    def __init__(self, locations: _Optional[_Iterable[_Union[Location, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SkuPlace(_message.Message):
    __slots__ = ("code", "type", "lot", "quantity", "expire_time")
    CODE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    code: str
    type: LocationType
    lot: str
    quantity: int
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., type: _Optional[_Union[LocationType, str]] = ..., lot: _Optional[str] = ..., quantity: _Optional[int] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSkuStockRequest(_message.Message):
    __slots__ = ("warehouse_id", "sku")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    sku: str
    def __init__(self, warehouse_id: _Optional[str] = ..., sku: _Optional[str] = ...) -> None: ...

class GetSkuStockResponse(_message.Message):
    __slots__ = ("sku", "places", "physical", "receiving", "outstanding", "backordered", "lost", "sellable", "picked_units")
    SKU_FIELD_NUMBER: _ClassVar[int]
    PLACES_FIELD_NUMBER: _ClassVar[int]
    PHYSICAL_FIELD_NUMBER: _ClassVar[int]
    RECEIVING_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_FIELD_NUMBER: _ClassVar[int]
    BACKORDERED_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    SELLABLE_FIELD_NUMBER: _ClassVar[int]
    PICKED_UNITS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    places: _containers.RepeatedCompositeFieldContainer[SkuPlace]
    physical: int
    receiving: int
    outstanding: int
    backordered: int
    lost: int
    sellable: int
    picked_units: int
    def __init__(self, sku: _Optional[str] = ..., places: _Optional[_Iterable[_Union[SkuPlace, _Mapping]]] = ..., physical: _Optional[int] = ..., receiving: _Optional[int] = ..., outstanding: _Optional[int] = ..., backordered: _Optional[int] = ..., lost: _Optional[int] = ..., sellable: _Optional[int] = ..., picked_units: _Optional[int] = ...) -> None: ...

class PurchaseOrderLine(_message.Message):
    __slots__ = ("sku", "quantity", "lot_tracked", "received")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LOT_TRACKED_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    lot_tracked: bool
    received: int
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ..., lot_tracked: _Optional[bool] = ..., received: _Optional[int] = ...) -> None: ...

class PurchaseOrder(_message.Message):
    __slots__ = ("po_id", "warehouse_id", "supplier", "lines", "state", "create_time")
    PO_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    po_id: str
    warehouse_id: str
    supplier: str
    lines: _containers.RepeatedCompositeFieldContainer[PurchaseOrderLine]
    state: PurchaseOrderState
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, po_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., supplier: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[PurchaseOrderLine, _Mapping]]] = ..., state: _Optional[_Union[PurchaseOrderState, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreatePurchaseOrderRequest(_message.Message):
    __slots__ = ("request_id", "warehouse_id", "supplier", "lines")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    warehouse_id: str
    supplier: str
    lines: _containers.RepeatedCompositeFieldContainer[PurchaseOrderLine]
    def __init__(self, request_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., supplier: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[PurchaseOrderLine, _Mapping]]] = ...) -> None: ...

class CreatePurchaseOrderResponse(_message.Message):
    __slots__ = ("purchase_order",)
    PURCHASE_ORDER_FIELD_NUMBER: _ClassVar[int]
    purchase_order: PurchaseOrder
    def __init__(self, purchase_order: _Optional[_Union[PurchaseOrder, _Mapping]] = ...) -> None: ...

class GetPurchaseOrderRequest(_message.Message):
    __slots__ = ("warehouse_id", "po_id")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    PO_ID_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    po_id: str
    def __init__(self, warehouse_id: _Optional[str] = ..., po_id: _Optional[str] = ...) -> None: ...

class GetPurchaseOrderResponse(_message.Message):
    __slots__ = ("purchase_order",)
    PURCHASE_ORDER_FIELD_NUMBER: _ClassVar[int]
    purchase_order: PurchaseOrder
    def __init__(self, purchase_order: _Optional[_Union[PurchaseOrder, _Mapping]] = ...) -> None: ...

class ReceiptLine(_message.Message):
    __slots__ = ("sku", "quantity", "lot", "expire_time")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    lot: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ..., lot: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReceiveRequest(_message.Message):
    __slots__ = ("request_id", "warehouse_id", "po_id", "lines")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    PO_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    warehouse_id: str
    po_id: str
    lines: _containers.RepeatedCompositeFieldContainer[ReceiptLine]
    def __init__(self, request_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., po_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[ReceiptLine, _Mapping]]] = ...) -> None: ...

class ReceiveResponse(_message.Message):
    __slots__ = ("purchase_order", "receiving")
    PURCHASE_ORDER_FIELD_NUMBER: _ClassVar[int]
    RECEIVING_FIELD_NUMBER: _ClassVar[int]
    purchase_order: PurchaseOrder
    receiving: Location
    def __init__(self, purchase_order: _Optional[_Union[PurchaseOrder, _Mapping]] = ..., receiving: _Optional[_Union[Location, _Mapping]] = ...) -> None: ...

class PutAwaySuggestion(_message.Message):
    __slots__ = ("code", "quantity", "room", "distance_dm", "same_product")
    CODE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ROOM_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_DM_FIELD_NUMBER: _ClassVar[int]
    SAME_PRODUCT_FIELD_NUMBER: _ClassVar[int]
    code: str
    quantity: int
    room: int
    distance_dm: int
    same_product: bool
    def __init__(self, code: _Optional[str] = ..., quantity: _Optional[int] = ..., room: _Optional[int] = ..., distance_dm: _Optional[int] = ..., same_product: _Optional[bool] = ...) -> None: ...

class SuggestPutAwayRequest(_message.Message):
    __slots__ = ("warehouse_id", "sku", "lot", "quantity")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    sku: str
    lot: str
    quantity: int
    def __init__(self, warehouse_id: _Optional[str] = ..., sku: _Optional[str] = ..., lot: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class SuggestPutAwayResponse(_message.Message):
    __slots__ = ("suggestions", "unplaced")
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    UNPLACED_FIELD_NUMBER: _ClassVar[int]
    suggestions: _containers.RepeatedCompositeFieldContainer[PutAwaySuggestion]
    unplaced: int
    def __init__(self, suggestions: _Optional[_Iterable[_Union[PutAwaySuggestion, _Mapping]]] = ..., unplaced: _Optional[int] = ...) -> None: ...

class PutAwayRequest(_message.Message):
    __slots__ = ("request_id", "warehouse_id", "sku", "lot", "quantity", "to_code")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TO_CODE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    warehouse_id: str
    sku: str
    lot: str
    quantity: int
    to_code: str
    def __init__(self, request_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., sku: _Optional[str] = ..., lot: _Optional[str] = ..., quantity: _Optional[int] = ..., to_code: _Optional[str] = ...) -> None: ...

class PutAwayResponse(_message.Message):
    __slots__ = ("location", "inventory_on_hand")
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_ON_HAND_FIELD_NUMBER: _ClassVar[int]
    location: Location
    inventory_on_hand: int
    def __init__(self, location: _Optional[_Union[Location, _Mapping]] = ..., inventory_on_hand: _Optional[int] = ...) -> None: ...

class MoveStockRequest(_message.Message):
    __slots__ = ("request_id", "warehouse_id", "sku", "lot", "quantity", "from_code", "to_code")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FROM_CODE_FIELD_NUMBER: _ClassVar[int]
    TO_CODE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    warehouse_id: str
    sku: str
    lot: str
    quantity: int
    from_code: str
    to_code: str
    def __init__(self, request_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., sku: _Optional[str] = ..., lot: _Optional[str] = ..., quantity: _Optional[int] = ..., from_code: _Optional[str] = ..., to_code: _Optional[str] = ...) -> None: ...

class MoveStockResponse(_message.Message):
    __slots__ = ("to",)
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    to: Location
    def __init__(self, to: _Optional[_Union[Location, _Mapping]] = ..., **kwargs) -> None: ...

class PickTask(_message.Message):
    __slots__ = ("index", "order_id", "sku", "lot", "code", "quantity", "picked", "confirmed")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PICKED_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    index: int
    order_id: str
    sku: str
    lot: str
    code: str
    quantity: int
    picked: int
    confirmed: bool
    def __init__(self, index: _Optional[int] = ..., order_id: _Optional[str] = ..., sku: _Optional[str] = ..., lot: _Optional[str] = ..., code: _Optional[str] = ..., quantity: _Optional[int] = ..., picked: _Optional[int] = ..., confirmed: _Optional[bool] = ...) -> None: ...

class Wave(_message.Message):
    __slots__ = ("wave_id", "warehouse_id", "order_ids", "picks", "distance_dm", "s_shape_distance_dm", "saved_dm", "complete", "create_time")
    WAVE_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    PICKS_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_DM_FIELD_NUMBER: _ClassVar[int]
    S_SHAPE_DISTANCE_DM_FIELD_NUMBER: _ClassVar[int]
    SAVED_DM_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    wave_id: str
    warehouse_id: str
    order_ids: _containers.RepeatedScalarFieldContainer[str]
    picks: _containers.RepeatedCompositeFieldContainer[PickTask]
    distance_dm: int
    s_shape_distance_dm: int
    saved_dm: int
    complete: bool
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, wave_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., order_ids: _Optional[_Iterable[str]] = ..., picks: _Optional[_Iterable[_Union[PickTask, _Mapping]]] = ..., distance_dm: _Optional[int] = ..., s_shape_distance_dm: _Optional[int] = ..., saved_dm: _Optional[int] = ..., complete: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BuildWaveRequest(_message.Message):
    __slots__ = ("request_id", "warehouse_id", "max_orders")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_ORDERS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    warehouse_id: str
    max_orders: int
    def __init__(self, request_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., max_orders: _Optional[int] = ...) -> None: ...

class BuildWaveResponse(_message.Message):
    __slots__ = ("wave", "backordered_order_ids")
    WAVE_FIELD_NUMBER: _ClassVar[int]
    BACKORDERED_ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    wave: Wave
    backordered_order_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, wave: _Optional[_Union[Wave, _Mapping]] = ..., backordered_order_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetWaveRequest(_message.Message):
    __slots__ = ("warehouse_id", "wave_id")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    WAVE_ID_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    wave_id: str
    def __init__(self, warehouse_id: _Optional[str] = ..., wave_id: _Optional[str] = ...) -> None: ...

class GetWaveResponse(_message.Message):
    __slots__ = ("wave",)
    WAVE_FIELD_NUMBER: _ClassVar[int]
    wave: Wave
    def __init__(self, wave: _Optional[_Union[Wave, _Mapping]] = ...) -> None: ...

class ConfirmPickRequest(_message.Message):
    __slots__ = ("request_id", "warehouse_id", "wave_id", "index", "picked_quantity")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    WAVE_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PICKED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    warehouse_id: str
    wave_id: str
    index: int
    picked_quantity: int
    def __init__(self, request_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., wave_id: _Optional[str] = ..., index: _Optional[int] = ..., picked_quantity: _Optional[int] = ...) -> None: ...

class ConfirmPickResponse(_message.Message):
    __slots__ = ("pick", "short_quantity", "wave_complete")
    PICK_FIELD_NUMBER: _ClassVar[int]
    SHORT_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    WAVE_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    pick: PickTask
    short_quantity: int
    wave_complete: bool
    def __init__(self, pick: _Optional[_Union[PickTask, _Mapping]] = ..., short_quantity: _Optional[int] = ..., wave_complete: _Optional[bool] = ...) -> None: ...

class Carton(_message.Message):
    __slots__ = ("carton_id", "items", "weight_grams")
    CARTON_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_GRAMS_FIELD_NUMBER: _ClassVar[int]
    carton_id: str
    items: _containers.RepeatedCompositeFieldContainer[StockItem]
    weight_grams: int
    def __init__(self, carton_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[StockItem, _Mapping]]] = ..., weight_grams: _Optional[int] = ...) -> None: ...

class PackRequest(_message.Message):
    __slots__ = ("request_id", "warehouse_id", "order_id", "cartons")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CARTONS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    warehouse_id: str
    order_id: str
    cartons: _containers.RepeatedCompositeFieldContainer[Carton]
    def __init__(self, request_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., order_id: _Optional[str] = ..., cartons: _Optional[_Iterable[_Union[Carton, _Mapping]]] = ...) -> None: ...

class PackResponse(_message.Message):
    __slots__ = ("fulfillment",)
    FULFILLMENT_FIELD_NUMBER: _ClassVar[int]
    fulfillment: Fulfillment
    def __init__(self, fulfillment: _Optional[_Union[Fulfillment, _Mapping]] = ...) -> None: ...

class ShipRequest(_message.Message):
    __slots__ = ("request_id", "warehouse_id", "order_id", "carrier", "tracking_number")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CARRIER_FIELD_NUMBER: _ClassVar[int]
    TRACKING_NUMBER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    warehouse_id: str
    order_id: str
    carrier: str
    tracking_number: str
    def __init__(self, request_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., order_id: _Optional[str] = ..., carrier: _Optional[str] = ..., tracking_number: _Optional[str] = ...) -> None: ...

class ShipResponse(_message.Message):
    __slots__ = ("fulfillment",)
    FULFILLMENT_FIELD_NUMBER: _ClassVar[int]
    fulfillment: Fulfillment
    def __init__(self, fulfillment: _Optional[_Union[Fulfillment, _Mapping]] = ...) -> None: ...

class FulfillmentLine(_message.Message):
    __slots__ = ("sku", "quantity", "allocated", "in_wave", "picked", "backordered")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    IN_WAVE_FIELD_NUMBER: _ClassVar[int]
    PICKED_FIELD_NUMBER: _ClassVar[int]
    BACKORDERED_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    allocated: int
    in_wave: int
    picked: int
    backordered: int
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ..., allocated: _Optional[int] = ..., in_wave: _Optional[int] = ..., picked: _Optional[int] = ..., backordered: _Optional[int] = ...) -> None: ...

class Fulfillment(_message.Message):
    __slots__ = ("order_id", "warehouse_id", "state", "lines", "cartons", "carrier", "tracking_number", "wave_id", "update_time")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    CARTONS_FIELD_NUMBER: _ClassVar[int]
    CARRIER_FIELD_NUMBER: _ClassVar[int]
    TRACKING_NUMBER_FIELD_NUMBER: _ClassVar[int]
    WAVE_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    warehouse_id: str
    state: FulfillmentState
    lines: _containers.RepeatedCompositeFieldContainer[FulfillmentLine]
    cartons: _containers.RepeatedCompositeFieldContainer[Carton]
    carrier: str
    tracking_number: str
    wave_id: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, order_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., state: _Optional[_Union[FulfillmentState, str]] = ..., lines: _Optional[_Iterable[_Union[FulfillmentLine, _Mapping]]] = ..., cartons: _Optional[_Iterable[_Union[Carton, _Mapping]]] = ..., carrier: _Optional[str] = ..., tracking_number: _Optional[str] = ..., wave_id: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetFulfillmentRequest(_message.Message):
    __slots__ = ("warehouse_id", "order_id")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    order_id: str
    def __init__(self, warehouse_id: _Optional[str] = ..., order_id: _Optional[str] = ...) -> None: ...

class GetFulfillmentResponse(_message.Message):
    __slots__ = ("fulfillment",)
    FULFILLMENT_FIELD_NUMBER: _ClassVar[int]
    fulfillment: Fulfillment
    def __init__(self, fulfillment: _Optional[_Union[Fulfillment, _Mapping]] = ...) -> None: ...

class CycleCountItem(_message.Message):
    __slots__ = ("sku", "abc_class", "picked_units", "last_count_time", "next_due_time", "due", "codes")
    SKU_FIELD_NUMBER: _ClassVar[int]
    ABC_CLASS_FIELD_NUMBER: _ClassVar[int]
    PICKED_UNITS_FIELD_NUMBER: _ClassVar[int]
    LAST_COUNT_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_TIME_FIELD_NUMBER: _ClassVar[int]
    DUE_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    sku: str
    abc_class: AbcClass
    picked_units: int
    last_count_time: _timestamp_pb2.Timestamp
    next_due_time: _timestamp_pb2.Timestamp
    due: bool
    codes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sku: _Optional[str] = ..., abc_class: _Optional[_Union[AbcClass, str]] = ..., picked_units: _Optional[int] = ..., last_count_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_due_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., due: _Optional[bool] = ..., codes: _Optional[_Iterable[str]] = ...) -> None: ...

class PlanCycleCountsRequest(_message.Message):
    __slots__ = ("warehouse_id", "due_only")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    DUE_ONLY_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    due_only: bool
    def __init__(self, warehouse_id: _Optional[str] = ..., due_only: _Optional[bool] = ...) -> None: ...

class PlanCycleCountsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CycleCountItem]
    def __init__(self, items: _Optional[_Iterable[_Union[CycleCountItem, _Mapping]]] = ...) -> None: ...

class RecordCountRequest(_message.Message):
    __slots__ = ("request_id", "warehouse_id", "code", "sku", "lot", "counted_quantity", "counted_by")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    COUNTED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    COUNTED_BY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    warehouse_id: str
    code: str
    sku: str
    lot: str
    counted_quantity: int
    counted_by: str
    def __init__(self, request_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., code: _Optional[str] = ..., sku: _Optional[str] = ..., lot: _Optional[str] = ..., counted_quantity: _Optional[int] = ..., counted_by: _Optional[str] = ...) -> None: ...

class RecordCountResponse(_message.Message):
    __slots__ = ("expected_quantity", "counted_quantity", "difference", "audit_sequence", "inventory_on_hand")
    EXPECTED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    COUNTED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_ON_HAND_FIELD_NUMBER: _ClassVar[int]
    expected_quantity: int
    counted_quantity: int
    difference: int
    audit_sequence: int
    inventory_on_hand: int
    def __init__(self, expected_quantity: _Optional[int] = ..., counted_quantity: _Optional[int] = ..., difference: _Optional[int] = ..., audit_sequence: _Optional[int] = ..., inventory_on_hand: _Optional[int] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("sequence", "kind", "sku", "lot", "from_code", "to_code", "quantity", "reference", "expected_quantity", "counted_quantity", "time", "request_id")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    FROM_CODE_FIELD_NUMBER: _ClassVar[int]
    TO_CODE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    COUNTED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    kind: AuditKind
    sku: str
    lot: str
    from_code: str
    to_code: str
    quantity: int
    reference: str
    expected_quantity: int
    counted_quantity: int
    time: _timestamp_pb2.Timestamp
    request_id: str
    def __init__(self, sequence: _Optional[int] = ..., kind: _Optional[_Union[AuditKind, str]] = ..., sku: _Optional[str] = ..., lot: _Optional[str] = ..., from_code: _Optional[str] = ..., to_code: _Optional[str] = ..., quantity: _Optional[int] = ..., reference: _Optional[str] = ..., expected_quantity: _Optional[int] = ..., counted_quantity: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("warehouse_id", "from_sequence", "page_size")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    from_sequence: int
    page_size: int
    def __init__(self, warehouse_id: _Optional[str] = ..., from_sequence: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("records", "next_sequence")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    next_sequence: int
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ..., next_sequence: _Optional[int] = ...) -> None: ...
