%% dp_agent: lets a Python test harness drive a real node.
%%
%% Started with `-s dp_agent start`. Opens a {packet,4} port on file descriptors 3 (read)
%% and 4 (write), so stdout stays free for the node's own io and logs.
%% Request:  <<Id:32, ExprLen:32, Expr:ExprLen/binary, Bin/binary>>
%%           Expr is Erlang source text of expressions ending in "."; the variable `Bin`
%%           is bound to the trailing bytes.
%% Reply:    term_to_binary({Id, {ok, Value}} | {Id, {error, Class, Reason, Text}})
%% Each request runs in its own process, so a blocking expression does not stall others.
%% End of file on fd 3 (the harness went away) halts the node.
-module(dp_agent).
-export([start/0, init/0]).

start() ->
    spawn(?MODULE, init, []),
    ok.

init() ->
    register(dp_agent, self()),
    Port = open_port({fd, 3, 4}, [{packet, 4}, binary, eof]),
    loop(Port).

loop(Port) ->
    receive
        {Port, {data, <<Id:32, Len:32, Expr:Len/binary, Bin/binary>>}} ->
            Agent = self(),
            spawn(fun() -> Agent ! {reply, Id, run(Expr, Bin)} end),
            loop(Port);
        {reply, Id, Result} ->
            Data = try term_to_binary({Id, Result}, [{minor_version, 2}])
                   catch _:_ -> term_to_binary({Id, {error, error, unencodable, <<>>}})
                   end,
            port_command(Port, Data),
            loop(Port);
        {Port, eof} ->
            erlang:halt(0, [{flush, false}]);
        _Other ->
            loop(Port)
    end.

run(Expr, Bin) ->
    try
        {ok, Tokens, _} = erl_scan:string(unicode:characters_to_list(Expr)),
        {ok, Exprs} = erl_parse:parse_exprs(Tokens),
        {value, Value, _} = erl_eval:exprs(Exprs, erl_eval:add_binding('Bin', Bin, erl_eval:new_bindings())),
        {ok, Value}
    catch
        Class:Reason:Stack ->
            %% Depth-limited text, and the reason itself only when small: a failed call
            %% carrying a 64 MiB argument must not become a 64 MiB error report.
            Text = iolist_to_binary(io_lib:format("~0P:~0P ~0P", [Class, 20, Reason, 20, Stack, 20])),
            {error, Class, small(Reason), Text}
    end.

-define(MAX_REASON_BYTES, 65536).

small(Term) ->
    case erlang:external_size(Term) =< ?MAX_REASON_BYTES of
        true -> Term;
        false -> too_large_to_report
    end.
