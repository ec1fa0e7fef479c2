"""The web inbox's connections to the database: a few, as the app's own login role, lent to one
request at a time for one transaction that begins with SET LOCAL ROLE <the signed-in agent>.

So the database decides what an agent sees and may send (its grants, its channel grants and
row-level security), not this app: the app's role itself holds no rights (NOINHERIT), only the
membership in each agent role that SET ROLE needs. SET LOCAL ends with the transaction, so a
connection goes back to the pool as the app's role again.
"""

import asyncio
from contextlib import asynccontextmanager

import psycopg
from psycopg import pq, sql
from psycopg.rows import dict_row


class DatabaseDown(Exception):
    """The database could not be reached: said on the page, never silently dropped."""


class RoleRefused(Exception):
    """The app's role may not act as this agent (any more): SET ROLE was refused, or the role is
    gone. The agent's session is then over."""


def first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else "connection lost"


class Pool:
    def __init__(self, dsn, size):
        self.dsn = dsn
        self.idle: list[psycopg.AsyncConnection] = []
        # At most `size` connections at once; a request beyond that waits for one to come back.
        self.slots = asyncio.Semaphore(size)

    async def connect(self, autocommit=False, application_name="web_inbox"):
        try:
            # No server-side prepared statements: a connection serves many roles in turn, and a
            # plan is then never one made for another role.
            return await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=autocommit, application_name=application_name, prepare_threshold=None
            )
        except psycopg.OperationalError as e:
            raise DatabaseDown(first_line(e)) from e

    @asynccontextmanager
    async def transaction(self, role):
        """A cursor (rows as dicts) in a transaction as `role` (None: as the app's own role,
        which can read nothing of the extension's; only to see that the database answers).
        Committed when the block ends, rolled back when it raises."""
        async with self.slots:
            conn = await self._begin(role)
            try:
                yield conn.cursor(row_factory=dict_row)
                await conn.commit()
            except BaseException:
                await self._rollback(conn)
                raise
            finally:
                await self._give_back(conn)

    async def _begin(self, role):
        while True:
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else await self.connect()
            try:
                if role is None:
                    await conn.execute("SELECT 1")
                else:
                    # An identifier, quoted as one: a role name is never pasted into SQL.
                    await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                return conn
            except psycopg.Error as e:
                if e.sqlstate is None or conn.broken:  # no answer: the connection failed
                    await conn.close()
                    if not reused:
                        raise DatabaseDown(first_line(e)) from e
                    # It sat idle while the server went away (a restart): nothing ran on it, so
                    # the next idle one, or a new one, is tried.
                    continue
                await self._rollback(conn)
                await self._give_back(conn)
                raise RoleRefused(e.diag.message_primary or first_line(e)) from e

    async def _rollback(self, conn):
        try:
            await conn.rollback()
        except psycopg.Error:
            await conn.close()  # broken: _give_back discards it

    async def _give_back(self, conn):
        # Only a connection that is fine and outside any transaction is used again.
        if conn.closed or conn.broken or conn.info.transaction_status != pq.TransactionStatus.IDLE:
            await conn.close()
        else:
            self.idle.append(conn)

    async def close(self):
        while self.idle:
            await self.idle.pop().close()
