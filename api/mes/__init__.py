"""The MES over HTTP: work orders and operations, lots and genealogy, and 4M1E master data.

One router under /api/v1 with the MES controllers, their connection and their refusals (404/409/422).
"""

from litestar import Router
from litestar.di import Provide

from api.deps import provide_conn
from api.mes.downtime import DowntimeController
from api.mes.energy import EnergyController
from api.mes.errors import HANDLERS
from api.mes.material import ItemController, LotController
from api.mes.method import ProductController, RoutingController
from api.mes.operators import OperatorController
from api.mes.orders import OrderController
from api.mes.recipes import MachineRecipeController, RecipeController
from api.mes.sessions import SessionController
from api.mes.shifts import ShiftController

mes_router = Router(
    path="/api/v1",
    route_handlers=[OrderController, ItemController, LotController, ProductController, RoutingController,
                    RecipeController, MachineRecipeController, OperatorController, SessionController,
                    ShiftController, DowntimeController, EnergyController],
    dependencies={"conn": Provide(provide_conn)},
    exception_handlers=HANDLERS,  # type: ignore[arg-type]
)
