%% dp_bench: the load loops of the benchmark suite (bench/suite.py).
%%
%% Load is generated inside the nodes, so the Python harness is never the bottleneck:
%% the sending node runs a tight loop of N sends to a registered sink on the other node,
%% then waits for the sink's ack, and times the whole thing with erlang:monotonic_time.
%%
%% Every reply from the sink node is a message `{Ref, _}` to the caller, where Ref was
%% made by the caller: that is the shape of a reply the unequal-trust policy accepts
%% from an untrusted peer ("{ref(), _}"), so the same loops run in every mode.
%%
%% On the sink node:    dp_bench:start_sink(Name), dp_bench:start_server(Name).
%% On the sending node: dp_bench:stream(...), dp_bench:calls(...), dp_bench:erpcs(...),
%%                      dp_bench:fanout(...).
-module(dp_bench).
-behaviour(gen_server).
-export([start_sink/1, sink_pid/2, stream/5, calls/3, erpcs/2, fanout/5, percentile/2, dist_stat/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).
-export([start_server/1]).

-define(ACK_TIMEOUT, 120000).

%% -- sink -------------------------------------------------------------------------------

%% A registered process that counts messages and answers {Ref, {count, N}} to
%% {'$dp_done', From, Ref} (then starts counting again), and {Ref, {pid, self()}} to
%% {'$dp_hello', From, Ref}.
start_sink(Name) ->
    Parent = self(),
    Pid = spawn(fun() -> register(Name, self()), Parent ! {registered, self()}, sink_loop(0) end),
    receive {registered, Pid} -> {ok, Pid} after 5000 -> {error, timeout} end.

sink_loop(N) ->
    receive
        {'$dp_done', From, Ref} -> From ! {Ref, {count, N}}, sink_loop(0);
        {'$dp_hello', From, Ref} -> From ! {Ref, {pid, self()}}, sink_loop(N);
        _ -> sink_loop(N + 1)
    end.

%% The sink's pid, learnt by a message round trip (so SEND_SENDER can address it).
sink_pid(Name, Node) ->
    Ref = make_ref(),
    {Name, Node} ! {'$dp_hello', self(), Ref},
    receive {Ref, {pid, Pid}} -> Pid after ?ACK_TIMEOUT -> error(no_sink) end.

%% The dist socket to Node: the port it is connected to (the proxy's, if one is in
%% between) and the bytes received and sent on it, to prove where traffic went.
dist_stat(Node) ->
    {Node, Ctrl} = lists:keyfind(Node, 1, erlang:system_info(dist_ctrl)),
    {ok, {_, Port}} = inet:peername(Ctrl),
    {ok, [{recv_oct, R}, {send_oct, S}]} = inet:getstat(Ctrl, [recv_oct, send_oct]),
    {Port, R, S}.

%% -- streams ----------------------------------------------------------------------------

%% Send Msg N times to the sink (Mode = reg_send: {Name, Node} ! Msg; send_sender: to the
%% sink's pid), then wait for the count. Returns {Micros, Count}.
stream(Mode, Name, Node, N, Msg) ->
    Dest = case Mode of
               reg_send -> {Name, Node};
               send_sender -> sink_pid(Name, Node)
           end,
    T0 = erlang:monotonic_time(microsecond),
    send_n(Dest, Msg, N),
    Ref = make_ref(),
    Dest ! {'$dp_done', self(), Ref},
    receive
        {Ref, {count, Count}} -> {erlang:monotonic_time(microsecond) - T0, Count}
    after ?ACK_TIMEOUT -> error(ack_timeout)
    end.

send_n(_Dest, _Msg, 0) -> ok;
send_n(Dest, Msg, N) -> Dest ! Msg, send_n(Dest, Msg, N - 1).

%% -- round trips ------------------------------------------------------------------------

start_server(Name) ->
    gen_server:start({local, Name}, ?MODULE, [], []).

init([]) -> {ok, nostate}.
handle_call(Req, _From, S) -> {reply, Req, S}.
handle_cast(_Req, S) -> {noreply, S}.
handle_info(_Info, S) -> {noreply, S}.

%% N gen_server:call round trips; returns {P50, P99, Mean} in microseconds.
calls(Name, Node, N) ->
    Dest = {Name, Node},
    round_trips(fun() -> ping = gen_server:call(Dest, ping, ?ACK_TIMEOUT) end, N).

%% N erpc:call round trips of erlang:node/0 on Node.
erpcs(Node, N) ->
    round_trips(fun() -> Node = erpc:call(Node, erlang, node, [], ?ACK_TIMEOUT) end, N).

round_trips(Fun, N) ->
    Times = [begin
                 T0 = erlang:monotonic_time(nanosecond),
                 Fun(),
                 erlang:monotonic_time(nanosecond) - T0
             end || _ <- lists:seq(1, N)],
    Sorted = lists:sort(Times),
    {percentile(Sorted, 50) / 1000, percentile(Sorted, 99) / 1000, lists:sum(Times) / N / 1000}.

percentile(Sorted, P) ->
    lists:nth(max(1, min(length(Sorted), round(P / 100 * length(Sorted)))), Sorted).

%% -- many peers ---------------------------------------------------------------------------

%% One sender per node in Nodes, all started together: each sends N messages, mixing
%% small REG_SENDs, 1 KiB REG_SENDs (every Every-th) and SEND_SENDERs to the sink's pid,
%% then waits for the sink's count. Returns {WallMicros, [{Node, Micros, Count}]}.
fanout(Name, Nodes, N, Every, Big) ->
    Parent = self(),
    Go = make_ref(),
    Pids = [spawn_link(fun() -> fanout_sender(Parent, Go, Name, Node, N, Every, Big) end)
            || Node <- Nodes],
    [receive {ready, P} -> ok after ?ACK_TIMEOUT -> error(fanout_ready) end || P <- Pids],
    T0 = erlang:monotonic_time(microsecond),
    [P ! Go || P <- Pids],
    Results = [receive {done, P, R} -> R after ?ACK_TIMEOUT -> error(fanout_done) end || P <- Pids],
    {erlang:monotonic_time(microsecond) - T0, Results}.

fanout_sender(Parent, Go, Name, Node, N, Every, Big) ->
    Pid = sink_pid(Name, Node),
    Parent ! {ready, self()},
    receive Go -> ok end,
    T0 = erlang:monotonic_time(microsecond),
    mixed_n({Name, Node}, Pid, Big, Every, N),
    Ref = make_ref(),
    Pid ! {'$dp_done', self(), Ref},
    Count = receive {Ref, {count, C}} -> C after ?ACK_TIMEOUT -> error(ack_timeout) end,
    Parent ! {done, self(), {Node, erlang:monotonic_time(microsecond) - T0, Count}}.

mixed_n(_Reg, _Pid, _Big, _Every, 0) -> ok;
mixed_n(Reg, Pid, Big, Every, N) ->
    case N rem Every of
        0 -> Reg ! Big;
        1 -> Reg ! {small, N};
        _ -> Pid ! {small, N}
    end,
    mixed_n(Reg, Pid, Big, Every, N - 1).
